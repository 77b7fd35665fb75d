"""Corpus files → quantized notes, converted on all cores once and cached on disk.

Two readers, chosen by file suffix:

* ``.mid`` / ``.midi`` — :func:`read_midi`, the bridge's mido reader (≈ 17× faster than
  music21): every track merged, channel 10 (drums) left out, ``note_on`` with velocity 0 counted
  as a note-off, times in beats from the file's ticks-per-beat (tempo changes do not move notes).
* anything else music21 can parse (MusicXML, Humdrum, ABC…) — :func:`read_tunes`, with music21
  imported lazily; tied notes are merged into one note, grace notes and chord symbols left
  out.  A file that parses to an ``Opus`` (an ABC file of folk tunes holds hundreds) gives one
  piece per tune, named ``path#NNNN`` after its position in the file; a tune without notes is
  left out.

:func:`load_corpus` quantizes each piece with :meth:`TokenScheme.quantize` and caches the result
in ``cache_dir`` under a key made of the file's contents hash, the token-scheme version and the
grid, as one ``.npy`` per file (``allow_pickle=False``; rows ``tune, onset, pitch, duration,
velocity``, tune −1 for a file that is one score) or ``.json`` — nothing is ever unpickled.
Silences longer than :data:`MAX_SILENCE_BEATS` are shortened to it.  A corrupt,
unreadable or empty file costs one warning line and is counted in :attr:`Corpus.skipped`; it never
stops the run.  Called from the main thread of an offline command.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from bridge.errors import AntiphonError, ConfigError
from bridge.tokens import TOKEN_SCHEME_VERSION, Note, TokenScheme, close_gaps

__all__ = [
    "DEFAULT_CACHE_DIR",
    "MIDI_SUFFIXES",
    "Corpus",
    "Piece",
    "composer_files",
    "load_corpus",
    "load_sources",
    "midi_files",
    "read_file",
    "read_midi",
    "read_score",
    "read_tunes",
]

DEFAULT_CACHE_DIR = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "antiphon" / "corpus"
)
MIDI_SUFFIXES = (".mid", ".midi")
_READER_VERSION = 4  # bump when a reader changes what it extracts: invalidates the cache
MAX_SILENCE_BEATS = 16
"""Longer gaps between onsets are shortened to this (a hostile or broken file's 2^28-beat
silence would otherwise become tens of millions of rest tokens)."""

RawNote = tuple[float, int, float, int]
"""``(onset_beats, pitch, duration_beats, velocity)`` as read from a file, before quantization."""


@dataclass(frozen=True)
class Piece:
    """One corpus file after quantization; ``name`` is its path (the split sorts on it)."""

    name: str
    notes: tuple[Note, ...]


@dataclass
class Corpus:
    """The pieces read from some sources, plus what happened on the way."""

    pieces: list[Piece]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    converted: int = 0  # files parsed in this run
    cached: int = 0  # files served from the cache
    sources: list[str] = field(default_factory=list)

    @property
    def events(self) -> int:
        return sum(len(p.notes) for p in self.pieces)

    def summary(self) -> dict[str, Any]:
        """Small JSON-able description stored in the model file."""
        return {
            "sources": self.sources,
            "pieces": len(self.pieces),
            "notes": self.events,
            "skipped": len(self.skipped),
        }


# ----- file discovery ------------------------------------------------------------------------


def midi_files(folders: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Every ``.mid``/``.midi`` file under ``folders`` (recursive, any case), sorted."""
    found: set[Path] = set()
    for folder in folders:
        root = Path(folder)
        if not root.is_dir():
            raise ConfigError(f"MIDI folder not found: {root}")
        found.update(
            p for p in root.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file()
        )
    return sorted(found)


def composer_files(composer: str) -> list[Path]:
    """The scores music21 ships for ``composer``, without the ``.rntxt`` Roman-numeral analyses."""
    from music21 import corpus as m21corpus  # lazy: music21 takes a while to import

    paths = [Path(p) for p in m21corpus.getComposer(composer)]
    paths = sorted(p for p in paths if p.suffix.lower() != ".rntxt")
    if not paths:
        raise ConfigError(f"music21 has no corpus for composer {composer!r} (try 'bach')")
    return paths


# ----- readers (run in worker processes) -----------------------------------------------------


def read_midi(path: str | os.PathLike[str]) -> list[RawNote]:
    """Notes of a standard MIDI file: :func:`bridge.midifile.read_midi` (mido), drums left out."""
    from bridge.midifile import read_midi as read_song

    return [note.as_tuple() for note in read_song(Path(path)).notes]


def _score_notes(score: Any) -> list[RawNote]:
    """Notes of one music21 score (offsets are in quarter notes = beats); ties merged."""
    parts = list(getattr(score, "parts", None) or [score])
    notes: list[RawNote] = []
    for part in parts:
        tied: dict[int, int] = {}  # pitch → index in notes of the note a tie continues
        for element in part.flatten().notes:
            if element.duration.isGrace or "ChordSymbol" in element.classes:
                continue  # ornaments and chord-name annotations are not sounding notes
            onset = float(element.offset)
            duration = float(element.duration.quarterLength)
            velocity = element.volume.velocity
            velocity = 80 if velocity is None else int(velocity)
            for note in element.notes if element.isChord else [element]:
                pitch = getattr(note, "pitch", None)
                if pitch is None:  # unpitched percussion
                    continue
                midi = int(pitch.midi)
                tie = note.tie.type if note.tie is not None else None
                if tie in ("stop", "continue") and midi in tied:
                    index = tied[midi]
                    start, _, _, vel = notes[index]
                    notes[index] = (start, midi, onset + duration - start, vel)
                    if tie == "stop":
                        del tied[midi]
                    continue
                notes.append((onset, midi, duration, velocity))
                if tie in ("start", "continue"):
                    tied[midi] = len(notes) - 1
    return notes


def read_tunes(path: str | os.PathLike[str]) -> list[list[RawNote]] | list[RawNote]:
    """What music21 parses from ``path``: one note list per tune for an ``Opus`` (a list of
    lists, tunes in file order), else the score's notes (a flat list)."""
    from music21 import converter, stream  # lazy

    parsed = converter.parse(str(path), forceSource=True)
    if isinstance(parsed, stream.Opus):
        return [_score_notes(score) for score in parsed.scores]
    return _score_notes(parsed)


def read_score(path: str | os.PathLike[str]) -> list[RawNote]:
    """Notes of any score music21 parses; an ``Opus``'s tunes laid end to end, as one piece."""
    read = read_tunes(path)
    if read and isinstance(read[0], list):
        notes: list[RawNote] = []
        end = 0.0
        for tune in read:
            tune_notes: list[RawNote] = tune
            notes.extend((end + o, p, d, v) for o, p, d, v in tune_notes)
            end += max((o + d for o, _, d, _ in tune_notes), default=0.0)
        return notes
    return read  # type: ignore[return-value]


def read_file(path: str | os.PathLike[str]) -> list[list[RawNote]] | list[RawNote]:
    """Dispatch on the suffix: mido for MIDI files, music21 for everything else (which may give
    one note list per tune, see :func:`read_tunes`)."""
    if Path(path).suffix.lower() in MIDI_SUFFIXES:
        return read_midi(path)
    return read_tunes(path)


def _convert(path: str, grid: tuple[int, int, int, int]) -> tuple[str, Any]:
    """Worker: read and quantize one file.

    ``("ok", int32 array [n, 5])`` with rows ``tune, onset, pitch, duration, velocity`` (tune −1
    for a file that is one score), or ``("error", why)``.
    """
    steps, max_shift, max_duration, buckets = grid
    scheme = TokenScheme(steps, max_shift, max_duration, buckets)
    try:
        read = read_file(path)
        opus = bool(read) and isinstance(read[0], list)
        tunes: list[list[RawNote]] = read if opus else [read]  # type: ignore[assignment,list-item]
        rows: list[list[int]] = []
        for number, raw in enumerate(tunes):
            notes = close_gaps(scheme.quantize(raw), MAX_SILENCE_BEATS * steps)
            tag = number if opus else -1
            rows.extend([tag, n.onset, n.pitch, n.duration, n.velocity] for n in notes)
    except AntiphonError as exc:  # already one clear line, naming the file
        return "error", str(exc).removeprefix(f"{path}: ")
    except Exception as exc:  # a bad file must never stop the run
        text = str(exc).strip().splitlines()
        return "error", f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
    if not rows:
        return "error", "no notes"
    return "ok", np.array(rows, np.int32)


def _pieces(path: Path, rows: np.ndarray) -> list[Piece]:
    """A converted file's rows → one piece, or one piece per tune of an opus (``path#NNNN``)."""
    pieces: list[Piece] = []
    tags = rows[:, 0]
    for tag in np.unique(tags).tolist():
        chosen = rows[tags == tag, 1:].tolist()
        notes = tuple(Note(int(o), int(p), int(d), int(v)) for o, p, d, v in chosen)
        pieces.append(Piece(str(path) if tag < 0 else f"{path}#{tag:04d}", notes))
    return pieces


# ----- cache -----------------------------------------------------------------------------------


def _grid(scheme: TokenScheme) -> tuple[int, int, int, int]:
    return (scheme.steps_per_beat, scheme.max_shift, scheme.max_duration, scheme.velocity_buckets)


def _cache_key(path: Path, scheme: TokenScheme) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    grid = "-".join(map(str, _grid(scheme)))
    tag = f"scheme{TOKEN_SCHEME_VERSION}-reader{_READER_VERSION}-grid{grid}"
    return f"{digest.hexdigest()[:40]}-{tag}"


def _atomic_write(target: Path, write: Callable[[Any], None], binary: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as handle:
            write(handle)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cache_get(cache_dir: Path, key: str) -> tuple[str, Any] | None:
    npy, err = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    try:
        if npy.exists():
            array = np.load(npy, allow_pickle=False)
            if array.ndim == 2 and array.shape[1] == 5:
                return "ok", array
        elif err.exists():
            return "error", str(json.loads(err.read_text())["error"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a damaged cache entry is simply converted again
    return None


def _cache_put(cache_dir: Path, key: str, status: str, value: Any) -> None:
    try:
        if status == "ok":
            _atomic_write(cache_dir / f"{key}.npy", lambda h: np.save(h, value), binary=True)
        else:
            _atomic_write(
                cache_dir / f"{key}.json", lambda h: json.dump({"error": value}, h), binary=False
            )
    except OSError as exc:
        print(f"warning: cannot write corpus cache {cache_dir}: {exc}", file=sys.stderr)


# ----- loading -----------------------------------------------------------------------------------


def load_corpus(
    paths: Sequence[str | os.PathLike[str]],
    scheme: TokenScheme,
    *,
    cache_dir: str | os.PathLike[str] | None = DEFAULT_CACHE_DIR,
    workers: int | None = None,
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
) -> Corpus:
    """Read and quantize ``paths`` (in that order) with ``scheme``'s grid.

    Files missing from the cache are converted in a process pool (``workers`` defaults to all
    cores) behind a tqdm bar; ``cache_dir=None`` turns the cache off.  ``warn`` receives one line
    per skipped file (default: stderr).
    """
    say = warn or (lambda line: print(line, file=sys.stderr))
    cache = Path(cache_dir).expanduser() if cache_dir is not None else None
    files = [Path(p) for p in paths]
    results: dict[int, tuple[str, Any]] = {}
    keys: dict[int, str] = {}
    corpus = Corpus(pieces=[])
    for i, path in enumerate(files):
        try:
            keys[i] = _cache_key(path, scheme)
        except OSError as exc:
            results[i] = ("error", f"{type(exc).__name__}: {exc.strerror or exc}")
            continue
        hit = _cache_get(cache, keys[i]) if cache is not None else None
        if hit is not None:
            results[i] = hit
            corpus.cached += 1
    todo = [i for i in range(len(files)) if i not in results]
    if todo:
        results.update(_convert_all(files, todo, _grid(scheme), workers, progress))
        corpus.converted = len(todo)
        if cache is not None:
            for i in todo:
                _cache_put(cache, keys[i], *results[i])
    for i, path in enumerate(files):
        status, value = results[i]
        if status == "ok":
            corpus.pieces.extend(_pieces(path, value))
        else:
            corpus.skipped.append((str(path), value))
            say(f"warning: skipped {path}: {value}")
    if corpus.skipped:
        say(f"skipped {len(corpus.skipped)} of {len(files)} files")
    return corpus


def _convert_all(
    files: list[Path],
    todo: list[int],
    grid: tuple[int, int, int, int],
    workers: int | None,
    progress: bool,
) -> dict[int, tuple[str, Any]]:
    from tqdm import tqdm

    count = min(len(todo), workers or os.cpu_count() or 1)
    # disable=None: a bar on a terminal only, not in a log file
    bar = tqdm(total=len(todo), desc="converting", unit="file", disable=None if progress else True)
    results: dict[int, tuple[str, Any]] = {}
    try:
        if count <= 1 or len(todo) < 4:
            for i in todo:
                results[i] = _convert(str(files[i]), grid)
                bar.update()
        else:
            # fork is quickest; spawn once TensorFlow (and its threads) live in this process
            method = "spawn" if "tensorflow" in sys.modules else "fork"
            with ProcessPoolExecutor(count, mp_context=get_context(method)) as pool:
                futures = {i: pool.submit(_convert, str(files[i]), grid) for i in todo}
                for i, future in futures.items():
                    results[i] = future.result()
                    bar.update()
    finally:
        bar.close()
    return results


def load_sources(
    scheme: TokenScheme,
    *,
    composers: Sequence[str] = (),
    midi_dirs: Sequence[str | os.PathLike[str]] = (),
    max_pieces: int | None = None,
    cache_dir: str | os.PathLike[str] | None = DEFAULT_CACHE_DIR,
    workers: int | None = None,
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
) -> Corpus:
    """Gather music21 composer corpora and MIDI folders, then :func:`load_corpus` them.

    ``max_pieces`` keeps the first N files in sorted order (for tiny runs and tests).
    """
    if not composers and not midi_dirs:
        raise ConfigError("no corpus given: use --corpus NAME and/or --midi DIR")
    paths: list[Path] = []
    sources: list[str] = []
    for name in composers:
        paths.extend(composer_files(name))
        sources.append(f"music21:{name}")
    if midi_dirs:
        found = midi_files(midi_dirs)
        if not found:
            raise ConfigError(f"no .mid/.midi files under {', '.join(map(str, midi_dirs))}")
        paths.extend(found)
        sources.extend(f"midi:{Path(d).name or d}" for d in midi_dirs)
    paths = sorted(set(paths))
    if max_pieces is not None:
        if max_pieces < 1:
            raise ConfigError(f"--max-pieces must be >= 1, got {max_pieces}")
        paths = paths[:max_pieces]
    corpus = load_corpus(
        paths, scheme, cache_dir=cache_dir, workers=workers, progress=progress, warn=warn
    )
    corpus.sources = sources
    if not corpus.pieces:
        raise ConfigError("the corpus has no readable pieces")
    return corpus
