"""ABC files of many tunes (music21 parses them to an Opus) are read tune by tune."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_support import SCHEME

from training.corpus import composer_files, load_corpus, read_tunes
from training.dataset import split_pieces

TWO_TUNES = """X:1
T:First
M:4/4
L:1/4
K:G
GABc|d2-d2|]

X:7
T:Second
M:3/4
L:1/4
K:D
DEF|A3|]

X:9
T:Empty
M:4/4
K:C
"""


@pytest.fixture()
def abc_file(tmp_path: Path) -> Path:
    path = tmp_path / "tunes.abc"
    path.write_text(TWO_TUNES)
    return path


def test_an_opus_gives_one_note_list_per_tune(abc_file: Path) -> None:
    tunes = read_tunes(abc_file)
    assert len(tunes) == 3 and all(isinstance(t, list) for t in tunes)
    first, second, empty = tunes
    assert [(o, p, d) for o, p, d, _ in first] == [  # type: ignore[misc]
        (0.0, 67, 1.0),
        (1.0, 69, 1.0),
        (2.0, 71, 1.0),
        (3.0, 72, 1.0),
        (4.0, 74, 4.0),
    ]
    assert [p for _, p, _, _ in second] == [62, 64, 66, 69]  # type: ignore[misc]
    assert empty == []


def test_each_tune_is_a_piece_named_by_its_place_and_cached(abc_file: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = load_corpus([abc_file], SCHEME, cache_dir=cache, progress=False)
    assert [p.name for p in first.pieces] == [f"{abc_file}#0000", f"{abc_file}#0001"]
    assert [n.pitch for n in first.pieces[1].notes] == [62, 64, 66, 69]
    assert first.pieces[0].notes[-1].duration == 4 * SCHEME.steps_per_beat  # tie merged
    assert all(p.notes[0].onset == 0 for p in first.pieces)  # each tune starts at its own 0
    again = load_corpus([abc_file], SCHEME, cache_dir=cache, progress=False)
    assert (again.converted, again.cached) == (0, 1)
    assert again.pieces == first.pieces


def test_a_single_score_keeps_its_plain_name(tmp_path: Path) -> None:
    path = tmp_path / "one.abc"
    path.write_text(TWO_TUNES.split("\n\n")[0] + "\n")
    corpus = load_corpus([path], SCHEME, cache_dir=None, progress=False)
    assert [p.name for p in corpus.pieces] == [str(path)]


def test_real_folk_file_splits_into_tunes_and_held_out_tunes() -> None:
    """One O'Neill's file: 50 tunes, each a single line (grace notes left out; a rare
    sixteenth-grid collision of fast notes aside), split tune by tune."""
    path = composer_files("oneills1850")[0]
    corpus = load_corpus([path], SCHEME, cache_dir=None, progress=False)
    assert len(corpus.pieces) == 50
    onsets = [(p.name, n.onset) for p in corpus.pieces for n in p.notes]
    assert len(set(onsets)) >= 0.98 * len(onsets) > 4000
    split = split_pieces(corpus.pieces, 10)
    assert len(split.held_out) == 5 and not {p.name for p in split.held_out} & {
        p.name for p in split.train
    }
