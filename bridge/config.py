"""Bridge settings: an immutable, validated value object and a thread-safe box holding it.

:class:`Settings` is checked when built (ranges, types, NaN/inf) and then never changes; a change
is a new object.  :class:`SettingsBox` is what the threads share: the OSC server thread and the
engine's control thread call :meth:`SettingsBox.update`, every other thread reads
:meth:`SettingsBox.get` and keeps the snapshot it got for the whole answer.  A rejected update
raises :class:`ConfigError` naming the bad value and leaves the old settings in place.

Also here: ``--cc SETTING=CC`` bindings (:func:`parse_cc_binding`) and the scaling of a 0..127
controller value onto a setting's range (:func:`cc_to_value`), used by the engine when a bound CC
arrives.  Pure Python, no imports beyond the standard library.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from bridge.errors import ConfigError

__all__ = [
    "BEATS_PER_BAR_RANGE",
    "BPM_RANGE",
    "CC_SCALES",
    "LENGTH_UNITS",
    "MODES",
    "STARTS",
    "Settings",
    "SettingsBox",
    "cc_to_value",
    "parse_cc_binding",
    "setting_name",
]

LENGTH_UNITS = ("events", "beats", "bars")
"""What ``length`` counts: events (notes or chords, not rests), beats or bars."""

MODES = ("call", "trigger", "listen")
"""``call``: answer after a silence; ``trigger``: only on demand; ``listen``: never answer."""

STARTS = ("auto", "now", "beat", "bar")
"""When an answer starts: ``auto`` is ``now`` without MIDI clock and ``beat`` while a clock runs."""

BPM_RANGE = (20.0, 300.0)
"""The tempo one may set (``--bpm``, ``/antiphon/tempo``, a CC).  A MIDI clock may drive the
tempo beyond it, within :data:`bridge.clock.CLOCK_BPM_RANGE`: a DAW's tempo is followed."""

BEATS_PER_BAR_RANGE = (1, 16)
"""``beats_per_bar``, for ``start bar`` and ``--unit bars`` (also the tempo tracker's limit)."""

CC_SCALES: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "length": (1, 128),
        "temperature": (0.05, 5.0),
        "top_k": (0, 127),
        "top_p": (0.05, 1.0),
        "bpm": BPM_RANGE,
        "silence_beats": (0.25, 16.0),
        "chord_window_ms": (0.0, 200.0),
        "key_lock": (0.0, 1.0),
    }
)
"""Settings a MIDI CC may drive, and the value CC 0 and CC 127 map to (linear in between)."""

_ALIASES = {
    "top-k": "top_k",
    "top-p": "top_p",
    "tempo": "bpm",
    "silence": "silence_beats",
    "chord-window": "chord_window_ms",
    "chord_window": "chord_window_ms",
    "key-lock": "key_lock",
}

_RESERVED_CCS = {64: "the sustain pedal (it extends note durations)"} | {
    cc: "a channel mode message" for cc in range(120, 128)
}


def setting_name(name: str) -> str:
    """The field name for ``name`` or an alias of it (``top-k``, ``tempo``, ``silence``…)."""
    return _ALIASES.get(name, name).replace("-", "_")


def _int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    number = int(value)
    if not low <= number <= high:
        raise ConfigError(f"{name} must be {low}..{high}, got {number}")
    return number


def _optional_int(name: str, value: object, low: int, high: int) -> int | None:
    return None if value is None else _int(name, value, low, high)


def _float(name: str, value: object, low: float, high: float, *, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be a finite number, got {number}")
    if (number <= low if low_open else number < low) or number > high:
        span = f"in ({low:g}, {high:g}]" if low_open else f"{low:g}..{high:g}"
        raise ConfigError(f"{name} must be {span}, got {number!r}")
    return number


def _choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _key(name: str, value: object) -> str:
    """``auto`` or a key name (``C``, ``F#m``, ``Bb``…), kept as given."""
    if value == "auto":
        return "auto"
    from bridge.key import parse_key  # numpy; imported only when a key is named

    try:
        parse_key(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be auto or a key like C, F#m, Bb; got {value!r}") from None
    return str(value)


def _bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigError(f"{name} must be true or false (1 or 0), got {value!r}")


def _check_cc(what: str, cc: int) -> None:
    if cc in _RESERVED_CCS:
        raise ConfigError(f"{what} cannot use CC {cc}: it is {_RESERVED_CCS[cc]}")


@dataclass(frozen=True)
class Settings:
    """Everything the musician can change while the bridge runs. Immutable; checked when built.

    Numbers given as ``int`` where a float is expected are converted; anything out of range, of
    the wrong kind, NaN or infinite raises :class:`ConfigError` with the field and the value.
    """

    length: int = 32
    length_unit: str = "events"
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 0.95
    bpm: float = 120.0
    mode: str = "call"
    in_channel: int | None = None
    out_channel: int = 1
    silence_beats: float = 1.0
    start: str = "auto"
    beats_per_bar: int = 4
    seed: int | None = None
    passthrough: bool = False
    chord_window_ms: float = 30.0
    trigger_cc: int | None = None
    trigger_note: int | None = None
    cc_bindings: Mapping[str, int] = field(default_factory=dict)
    key: str = "auto"
    key_lock: float = 0.8

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "length", _int("length", self.length, 1, 512))
        put(self, "length_unit", _choice("length_unit", self.length_unit, LENGTH_UNITS))
        put(self, "temperature", _float("temperature", self.temperature, 0.05, 5.0))
        put(self, "top_k", _int("top_k", self.top_k, 0, 1000))
        put(self, "top_p", _float("top_p", self.top_p, 0.0, 1.0, low_open=True))
        put(self, "bpm", _float("bpm", self.bpm, *BPM_RANGE))
        put(self, "mode", _choice("mode", self.mode, MODES))
        put(self, "in_channel", _optional_int("in_channel", self.in_channel, 1, 16))
        put(self, "out_channel", _int("out_channel", self.out_channel, 1, 16))
        put(self, "silence_beats", _float("silence_beats", self.silence_beats, 0.25, 16.0))
        put(self, "start", _choice("start", self.start, STARTS))
        put(self, "beats_per_bar", _int("beats_per_bar", self.beats_per_bar, *BEATS_PER_BAR_RANGE))
        put(self, "seed", _optional_int("seed", self.seed, 0, 2**63 - 1))
        put(self, "passthrough", _bool("passthrough", self.passthrough))
        put(self, "chord_window_ms", _float("chord_window_ms", self.chord_window_ms, 0.0, 200.0))
        put(self, "trigger_cc", _optional_int("trigger_cc", self.trigger_cc, 0, 127))
        put(self, "trigger_note", _optional_int("trigger_note", self.trigger_note, 0, 127))
        if self.trigger_cc is not None:
            _check_cc("trigger_cc", self.trigger_cc)
        put(self, "cc_bindings", self._checked_bindings(self.cc_bindings))
        put(self, "key", _key("key", self.key))
        put(self, "key_lock", _float("key_lock", self.key_lock, 0.0, 1.0))

    def _checked_bindings(self, bindings: object) -> Mapping[str, int]:
        if not isinstance(bindings, Mapping):
            raise ConfigError(f"cc_bindings must map setting names to CC numbers, got {bindings!r}")
        checked: dict[str, int] = {}
        owner: dict[int, str] = {}
        for raw_name, raw_cc in bindings.items():
            name = setting_name(str(raw_name))
            if name not in CC_SCALES:
                raise ConfigError(
                    f"cannot bind {raw_name!r} to a CC; bindable: {', '.join(CC_SCALES)}"
                )
            cc = _int(f"CC for {name}", raw_cc, 0, 127)
            _check_cc(f"{name}", cc)
            if cc == self.trigger_cc:
                raise ConfigError(f"CC {cc} is the trigger CC; it cannot also set {name}")
            if cc in owner:
                raise ConfigError(f"CC {cc} is bound to both {owner[cc]} and {name}")
            owner[cc] = name
            checked[name] = cc
        return MappingProxyType(checked)

    def replace(self, **changes: object) -> Settings:
        """A new Settings with ``changes`` applied (aliases accepted); ConfigError if unknown."""
        known = {f.name for f in dataclasses.fields(self)}
        resolved: dict[str, object] = {}
        for raw, value in changes.items():
            name = setting_name(raw)
            if name not in known:
                raise ConfigError(f"unknown setting {raw!r}")
            resolved[name] = value
        if "cc_bindings" in resolved and isinstance(resolved["cc_bindings"], Mapping):
            resolved["cc_bindings"] = dict(resolved["cc_bindings"])
        return dataclasses.replace(self, **resolved)  # type: ignore[arg-type]

    def cc_targets(self) -> dict[int, str]:
        """CC number → setting name, the inverse of ``cc_bindings`` (for the engine's lookup)."""
        return {cc: name for name, cc in self.cc_bindings.items()}

    def to_dict(self) -> dict[str, Any]:
        """Every setting as plain Python values (``cc_bindings`` as a plain dict)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["cc_bindings"] = dict(self.cc_bindings)
        return data


class SettingsBox:
    """The current :class:`Settings`, shared between threads.

    :meth:`get` is a lock-free read of one reference (any thread); :meth:`update` (OSC thread,
    engine control thread) builds and validates the new value under a lock, so two concurrent
    updates never lose each other's changes.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self._lock = threading.Lock()
        self._settings = settings if settings is not None else Settings()

    def get(self) -> Settings:
        """The current settings (an immutable snapshot)."""
        return self._settings

    def update(self, **changes: object) -> Settings:
        """Apply ``changes`` and return the new settings; on ConfigError the old ones stay."""
        with self._lock:
            new = self._settings.replace(**changes)
            self._settings = new
            return new


def parse_cc_binding(text: str) -> tuple[str, int]:
    """``"temperature=21"`` → ``("temperature", 21)``; ConfigError naming the bad text otherwise."""
    name, sep, number = text.partition("=")
    name = setting_name(name.strip())
    if not sep or not name or not number.strip():
        raise ConfigError(
            f"CC binding must look like SETTING=CC (e.g. temperature=21), got {text!r}"
        )
    if name not in CC_SCALES:
        raise ConfigError(f"cannot bind {text!r}: bindable settings are {', '.join(CC_SCALES)}")
    try:
        cc = int(number.strip())
    except ValueError:
        raise ConfigError(f"CC number must be 0..127, got {number.strip()!r} in {text!r}") from None
    _int(f"CC for {name}", cc, 0, 127)
    _check_cc(name, cc)
    return name, cc


def cc_to_value(setting: str, value: int) -> int | float:
    """Scale a controller value 0..127 linearly onto ``setting``'s CC range (see :data:`CC_SCALES`).

    Whole-number settings are rounded.  ConfigError for a setting that cannot be bound or a value
    outside 0..127.
    """
    name = setting_name(setting)
    if name not in CC_SCALES:
        raise ConfigError(f"{setting!r} cannot be driven by a CC")
    value = _int("CC value", value, 0, 127)
    low, high = CC_SCALES[name]
    scaled = low + (high - low) * value / 127
    if name in ("length", "top_k"):
        return round(scaled)
    return scaled
