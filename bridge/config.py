"""Bridge settings: an immutable, validated value object and a thread-safe box holding it.

:class:`Settings` is checked when built (ranges, types, NaN/inf) and then never changes; a change
is a new object.  :class:`SettingsBox` is what the threads share: the OSC server thread and the
engine's control thread call :meth:`SettingsBox.update`, every other thread reads
:meth:`SettingsBox.get` and keeps the snapshot it got for the whole answer.  A rejected update
raises :class:`ConfigError` naming the bad value and leaves the old settings in place.

Also here: ``--cc SETTING=CC`` bindings (:func:`parse_cc_binding`) and the scaling of a 0..127
controller value onto a setting's range (:func:`cc_to_value`), used by the engine when a bound CC
arrives.  What each setting accepts, its default and where it can be set from is described once,
in :data:`bridge.settings_spec.SPECS`; the checks here are driven by that table.  Pure Python, no
imports beyond the standard library.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from bridge.errors import ConfigError
from bridge.settings_spec import (
    BEATS_PER_BAR_RANGE,
    BPM_RANGE,
    LENGTH_UNITS,
    MODES,
    SPECS,
    STARTS,
    check_int,
    spec,
)

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

CC_SCALES: Mapping[str, tuple[float, float]] = MappingProxyType(
    {s.name: s.cc for s in SPECS if s.cc is not None}
)
"""Settings a MIDI CC may drive, and the value CC 0 and CC 127 map to (linear in between)."""

_ALIASES = {alias: s.name for s in SPECS for alias in s.aliases}

_RESERVED_CCS = {64: "the sustain pedal (it extends note durations)"} | {
    cc: "a channel mode message" for cc in range(120, 128)
}


def setting_name(name: str) -> str:
    """The field name for ``name`` or an alias of it (``top-k``, ``tempo``, ``silence``…)."""
    name = name.replace("-", "_")
    return _ALIASES.get(name, name)


def _check_cc(what: str, cc: int) -> None:
    if cc in _RESERVED_CCS:
        raise ConfigError(f"{what} cannot use CC {cc}: it is {_RESERVED_CCS[cc]}")


@dataclass(frozen=True)
class Settings:
    """Everything the musician can change while the bridge runs. Immutable; checked when built.

    Numbers given as ``int`` where a float is expected are converted; anything out of range, of
    the wrong kind, NaN or infinite raises :class:`ConfigError` with the field and the value.
    The fields, their defaults and their checks are :data:`~bridge.settings_spec.SPECS`'.
    """

    length: int = spec("length").default
    length_unit: str = spec("length_unit").default
    temperature: float = spec("temperature").default
    top_k: int = spec("top_k").default
    top_p: float = spec("top_p").default
    bpm: float = spec("bpm").default
    mode: str = spec("mode").default
    in_channel: int | None = spec("in_channel").default
    out_channel: int = spec("out_channel").default
    silence_beats: float = spec("silence_beats").default
    start: str = spec("start").default
    beats_per_bar: int = spec("beats_per_bar").default
    seed: int | None = spec("seed").default
    passthrough: bool = spec("passthrough").default
    chord_window_ms: float = spec("chord_window_ms").default
    trigger_cc: int | None = spec("trigger_cc").default
    trigger_note: int | None = spec("trigger_note").default
    cc_bindings: Mapping[str, int] = field(default_factory=dict)
    key: str = spec("key").default
    key_lock: float = spec("key_lock").default

    def __post_init__(self) -> None:
        put = object.__setattr__
        for setting in SPECS:
            if setting.name == "cc_bindings":  # checked last: it depends on trigger_cc
                continue
            put(self, setting.name, setting.check(getattr(self, setting.name)))
            if setting.name == "trigger_cc" and self.trigger_cc is not None:
                _check_cc("trigger_cc", self.trigger_cc)
        put(self, "cc_bindings", self._checked_bindings(self.cc_bindings))

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
            cc = check_int(f"CC for {name}", raw_cc, 0, 127)
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
        data = {s.name: getattr(self, s.name) for s in SPECS}
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
    check_int(f"CC for {name}", cc, 0, 127)
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
    value = check_int("CC value", value, 0, 127)
    low, high = CC_SCALES[name]
    scaled = low + (high - low) * value / 127
    if spec(name).kind == "int":
        return round(scaled)
    return scaled
