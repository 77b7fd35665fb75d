"""Settings ranges, types and the thread-safe box; --cc bindings and their scaling."""

from __future__ import annotations

import dataclasses
import math
import sys
import threading
from typing import Any

import numpy as np
import pytest

from bridge.config import (
    CC_SCALES,
    Settings,
    SettingsBox,
    cc_to_value,
    parse_cc_binding,
)
from bridge.errors import ConfigError
from bridge.settings_spec import ANSWER_SETTINGS, SPECS, settings_from_args


def make(**fields: Any) -> Settings:
    """Settings built from untyped values (the tests pass wrong kinds on purpose)."""
    return Settings(**fields)


def test_defaults_are_the_tables() -> None:
    """A bridge started without flags uses the defaults of the settings table, which are what
    README.md, examples/OSC.md and --help document (test_docs_ranges.py checks those)."""
    table = {s.name: s.default for s in SPECS}
    assert Settings().to_dict() == table
    assert [f.name for f in dataclasses.fields(Settings)] == list(table)
    from bridge import cli

    parser = cli.build_parser()  # `antiphon bridge` / `antiphon continue` without setting flags
    assert cli._settings(parser.parse_args(["bridge"])) == Settings()
    args = parser.parse_args(["continue", "in.mid", "-o", "out.mid"])
    answer = settings_from_args(args, (*ANSWER_SETTINGS, "beats_per_bar"))
    assert answer == {name: table[name] for name in answer} and args.bpm is None


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        ("length", [1, 512], [0, 513, -1]),
        ("temperature", [0.05, 5.0, 1], [0.049, 5.01, 0]),
        ("top_k", [0, 1000], [-1, 1001]),
        ("top_p", [0.05, 1.0, 1], [0.049, 0.0, 1.0001, -0.5]),
        ("bpm", [20, 300.0], [19.99, 300.5]),
        ("in_channel", [None, 1, 16], [0, 17]),
        ("out_channel", [1, 16], [0, 17, None]),
        ("silence_beats", [0.25, 16], [0.24, 16.5]),
        ("beats_per_bar", [1, 16], [0, 17]),
        ("seed", [None, 0, 2**63 - 1], [-1, 2**63]),
        ("chord_window_ms", [0, 200.0], [-0.1, 200.1]),
        ("key_lock", [0, 0.5, 1], [-0.01, 1.01]),
        ("trigger_cc", [None, 0, 119], [-1, 128]),
        ("trigger_note", [None, 0, 127], [-1, 128]),
    ],
)
def test_range_edges(name: str, good: list[object], bad: list[object]) -> None:
    for value in good:
        assert getattr(make(**{name: value}), name) == value
    for value in bad:
        with pytest.raises(ConfigError) as err:
            make(**{name: value})
        assert name in str(err.value)
        assert str(value) in str(err.value) or repr(value) in str(err.value)


@pytest.mark.parametrize(
    "name", ["temperature", "top_p", "bpm", "silence_beats", "chord_window_ms"]
)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_rejected(name: str, value: float) -> None:
    with pytest.raises(ConfigError, match=name):
        make(**{name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("length", 16.0),
        ("length", "16"),
        ("length", True),
        ("temperature", "1.0"),
        ("temperature", None),
        ("temperature", True),
        ("top_k", 2.5),
        ("mode", "jam"),
        ("mode", 1),
        ("start", "later"),
        ("length_unit", "notes"),
        ("passthrough", "yes"),
        ("passthrough", 2),
        ("cc_bindings", [("temperature", 21)]),
    ],
)
def test_wrong_kinds_raise_config_error(name: str, value: object) -> None:
    with pytest.raises(ConfigError, match=name):
        make(**{name: value})


def test_ints_become_floats_and_numpy_scalars_are_accepted() -> None:
    s = make(temperature=2, bpm=np.float32(90.5), length=np.int64(7))
    assert isinstance(s.temperature, float) and s.temperature == 2.0
    assert isinstance(s.bpm, float) and s.bpm == 90.5
    assert type(s.length) is int and s.length == 7


def test_settings_are_immutable() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.length = 8  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.cc_bindings["temperature"] = 21  # type: ignore[index]


def test_cc_bindings_are_checked() -> None:
    s = Settings(cc_bindings={"temperature": 21, "top-p": 22, "tempo": 23})
    assert dict(s.cc_bindings) == {"temperature": 21, "top_p": 22, "bpm": 23}
    assert s.cc_targets() == {21: "temperature", 22: "top_p", 23: "bpm"}
    with pytest.raises(ConfigError, match="both"):
        Settings(cc_bindings={"temperature": 21, "top_p": 21})
    with pytest.raises(ConfigError, match="trigger"):
        Settings(trigger_cc=21, cc_bindings={"temperature": 21})
    with pytest.raises(ConfigError, match="mode"):
        Settings(cc_bindings={"mode": 21})
    with pytest.raises(ConfigError, match="sustain"):
        Settings(cc_bindings={"temperature": 64})
    with pytest.raises(ConfigError, match="channel mode"):
        Settings(trigger_cc=123)
    with pytest.raises(ConfigError, match="128"):
        Settings(cc_bindings={"temperature": 128})


def test_replace_accepts_aliases_and_rejects_unknown_names() -> None:
    s = Settings().replace(tempo=90, silence=2, **{"top-k": 5})
    assert (s.bpm, s.silence_beats, s.top_k) == (90.0, 2.0, 5)
    with pytest.raises(ConfigError, match="unknown setting 'volume'"):
        Settings().replace(volume=3)


def test_to_dict_has_every_field_as_plain_values() -> None:
    data = Settings(cc_bindings={"temperature": 21}).to_dict()
    assert data["cc_bindings"] == {"temperature": 21} and type(data["cc_bindings"]) is dict
    assert set(data) >= {"length", "temperature", "bpm", "mode", "seed", "trigger_note"}


def test_box_update_keeps_old_settings_on_error() -> None:
    box = SettingsBox()
    new = box.update(temperature=0.5, length=8)
    assert box.get() is new and new.temperature == 0.5
    with pytest.raises(ConfigError, match="21"):
        box.update(temperature=21, length=4)
    assert box.get() is new and box.get().length == 8


def test_box_concurrent_updates_lose_nothing() -> None:
    box = SettingsBox()
    barrier = threading.Barrier(2)
    lost: list[tuple[str, object]] = []  # a thread's own value overwritten by the other's update

    def bump(field: str, values: range) -> None:
        barrier.wait()
        mine = getattr(box.get(), field)
        for v in values:
            if getattr(box.get(), field) != mine:  # only this thread changes this field
                lost.append((field, mine))
            mine = getattr(box.update(**{field: v}), field)

    threads = [
        threading.Thread(target=bump, args=("length", range(1, 400))),
        threading.Thread(target=bump, args=("top_k", range(0, 400))),
    ]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads constantly: an unlocked update loses values
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert lost == []
    assert (box.get().length, box.get().top_k) == (399, 399)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("temperature=21", ("temperature", 21)),
        (" top-p = 22 ", ("top_p", 22)),
        ("tempo=0", ("bpm", 0)),
        ("length=119", ("length", 119)),
    ],
)
def test_parse_cc_binding(text: str, expected: tuple[str, int]) -> None:
    assert parse_cc_binding(text) == expected


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("temperature", "SETTING=CC"),
        ("=21", "SETTING=CC"),
        ("temperature=", "SETTING=CC"),
        ("temperature=x", "'x'"),
        ("temperature=200", "200"),
        ("volume=21", "volume"),
        ("temperature=64", "sustain"),
    ],
)
def test_parse_cc_binding_errors_name_the_text(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_cc_binding(text)


@pytest.mark.parametrize("name", sorted(CC_SCALES))
def test_cc_to_value_spans_the_scale_and_is_a_valid_setting(name: str) -> None:
    low, high = CC_SCALES[name]
    assert cc_to_value(name, 0) == pytest.approx(low)
    assert cc_to_value(name, 127) == pytest.approx(high)
    values = [cc_to_value(name, v) for v in range(128)]
    assert values == sorted(values)
    for v in values:
        Settings().replace(**{name: v})  # every CC value is a legal setting


def test_cc_to_value_rounds_whole_number_settings_and_rejects_bad_input() -> None:
    assert cc_to_value("top_k", 40) == 40 and isinstance(cc_to_value("length", 63), int)
    with pytest.raises(ConfigError):
        cc_to_value("temperature", 128)
    with pytest.raises(ConfigError):
        cc_to_value("mode", 3)
