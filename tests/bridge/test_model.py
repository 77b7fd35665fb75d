"""Model loading and validation (one clear ModelError line), running, and name resolution."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bridge.errors import ModelError
from bridge.model import (
    default_model_dirs,
    default_model_path,
    find_model,
    load_model,
    model_dirs,
    resolve_model,
)
from bridge.tokens import TokenScheme


def test_loads_the_fixture_model(tiny_model_path: Path) -> None:
    model = load_model(tiny_model_path)
    assert model.name == "tiny"
    assert model.layers == (16, 12)
    assert model.scheme.chords == ((60, 64, 67), (57, 60, 64), (55, 59, 62))
    assert model.metadata["antiphon.format"] == "antiphon-lstm"
    assert model.training["fixture"] == "random"
    state = model.initial_state()
    assert sorted(state) == ["c_0", "c_1", "h_0", "h_1"]
    assert state["h_1"].shape == (1, 12) and not state["h_1"].any()


def test_priming_in_one_call_equals_step_by_step(tiny_model) -> None:
    scheme = tiny_model.scheme
    tokens = [
        scheme.bos,
        scheme.shift_token(0),
        scheme.note_base + 60,
        scheme.duration_token(2),
        scheme.velocity_token(1),
        scheme.shift_token(2),
    ]
    logits, state = tiny_model.run(tokens, tiny_model.initial_state())
    assert logits.shape == (len(tokens), scheme.vocab_size)
    step_state = tiny_model.initial_state()
    for i, token in enumerate(tokens):
        step_logits, step_state = tiny_model.run([token], step_state)
        np.testing.assert_allclose(step_logits[0], logits[i], rtol=1e-4, atol=1e-5)
    for name in state:
        np.testing.assert_allclose(step_state[name], state[name], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError):
        tiny_model.run([], state)


def expect_model_error(path: Path, *fragments: str) -> str:
    with pytest.raises(ModelError) as info:
        load_model(path)
    text = str(info.value)
    assert "\n" not in text
    for fragment in fragments:
        assert fragment in text
    return text


def test_missing_file(tmp_path: Path) -> None:
    expect_model_error(tmp_path / "nope.onnx", "not found", "nope.onnx")


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"\x08\x07garbage" * 50)
    expect_model_error(path, "not a readable ONNX model")


def test_truncated_file(tmp_path: Path, tiny_model_path: Path) -> None:
    path = tmp_path / "cut.onnx"
    path.write_bytes(tiny_model_path.read_bytes()[:500])
    expect_model_error(path, "cut.onnx")


def test_foreign_onnx_file(tmp_path: Path, model_builder) -> None:
    path = model_builder(
        tmp_path / "foreign.onnx",
        metadata={"antiphon.format": None, "antiphon.format_version": None},
    )
    expect_model_error(path, "not an Antiphon model")


def test_reference_window_model_is_refused(tmp_path: Path, model_builder) -> None:
    path = model_builder(
        tmp_path / "ref.onnx", metadata={"antiphon.format": "antiphon-reference-window"}
    )
    expect_model_error(path, "reference window", "antiphon-lstm")


def test_other_format(tmp_path: Path, model_builder) -> None:
    path = model_builder(tmp_path / "other.onnx", metadata={"antiphon.format": "gpt"})
    expect_model_error(path, "'gpt'")


def test_wrong_format_version(tmp_path: Path, model_builder) -> None:
    path = model_builder(tmp_path / "v2.onnx", metadata={"antiphon.format_version": "2"})
    expect_model_error(path, "version '2'", "reads version 1")


def test_bad_token_scheme(tmp_path: Path, model_builder) -> None:
    path = model_builder(tmp_path / "scheme.onnx", metadata={"antiphon.token_scheme": "{oops"})
    expect_model_error(path, "token scheme")
    future = json.loads(TokenScheme().to_json()) | {"version": 99}
    path = model_builder(
        tmp_path / "scheme2.onnx", metadata={"antiphon.token_scheme": json.dumps(future)}
    )
    expect_model_error(path, "version 99")


def test_layers_must_match_the_state_inputs(tmp_path: Path, model_builder) -> None:
    path = model_builder(tmp_path / "layers.onnx", metadata={"antiphon.layers": "[16]"})
    expect_model_error(path, "1 LSTM layer")
    path = model_builder(tmp_path / "units.onnx", metadata={"antiphon.layers": "[16, 99]"})
    expect_model_error(path, "99")
    path = model_builder(tmp_path / "junk.onnx", metadata={"antiphon.layers": '"two"'})
    expect_model_error(path, "antiphon.layers")


def test_vocabulary_must_match_the_logits(tmp_path: Path, model_builder) -> None:
    # A graph built for one scheme, labelled with a scheme that has one more chord.
    path = model_builder(
        tmp_path / "vocab.onnx",
        metadata={
            "antiphon.token_scheme": TokenScheme(
                steps_per_beat=4,
                max_shift=16,
                max_duration=16,
                velocity_buckets=4,
                chords=((60, 64, 67), (57, 60, 64), (55, 59, 62), (48, 52, 55)),
            ).to_json()
        },
    )
    expect_model_error(path, "logits")


def test_resolve_model_accepts_plain_names_only(tiny_model_path: Path, tmp_path: Path) -> None:
    models = tiny_model_path.parent
    assert resolve_model("tiny", [tmp_path, models]) == models / "tiny.onnx"
    assert resolve_model("tiny.onnx", [models]) == models / "tiny.onnx"
    for bad in [
        "../tiny",
        "a/b",
        str(tiny_model_path),
        "..",
        ".hidden",
        "",
        "x\\y",
        "tiny\x00",
        "~/tiny",
        "a" * 200,
    ]:
        with pytest.raises(ModelError):
            resolve_model(bad, [models])
    with pytest.raises(ModelError, match="no model named"):
        resolve_model("absent", [models])


def test_default_model_path_is_the_shipped_file() -> None:
    path = default_model_path()
    assert path.name == "default.onnx"
    assert path.parent.name == "models"


def test_find_model_reads_a_path_or_a_name_the_same_for_every_command(
    tiny_model_path: Path,
    tmp_path: Path,
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "solo.onnx").write_bytes(tiny_model_path.read_bytes())
    dirs = model_dirs([mine])
    assert find_model(None, dirs) == default_model_path()
    assert find_model("solo", dirs) == find_model("solo.onnx", dirs) == mine / "solo.onnx"
    assert find_model(str(tiny_model_path), dirs) == tiny_model_path  # an existing file
    assert find_model("elsewhere/x.onnx", dirs) == Path("elsewhere/x.onnx")  # a path: as given
    with pytest.raises(ModelError, match=r"'nothing' not found: no such file.*mine"):
        find_model("nothing", dirs)


def test_model_dirs_order_and_no_repeats(tmp_path: Path) -> None:
    shipped = default_model_dirs()
    assert model_dirs() == shipped
    assert model_dirs([tmp_path, tmp_path], tmp_path / "m.onnx") == [tmp_path, *shipped]
    assert model_dirs([], tmp_path / "m.onnx")[0] == tmp_path
