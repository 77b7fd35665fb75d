"""Every live setting described once: name, type, range, default, unit, help, OSC address, CC.

:data:`SPECS` is the one table (as mido's ``messages/specs.py`` is for messages).  It drives
:class:`bridge.config.Settings` (field defaults and checks: :meth:`SettingSpec.check`), the
setting flags of ``antiphon bridge`` and ``antiphon continue`` (:func:`add_setting_flags`), the
OSC control addresses :mod:`bridge.osc` answers, which settings a MIDI CC may drive
(:data:`bridge.config.CC_SCALES`) and the setting keys of ``/antiphon/status`` (``to_dict``).
README.md, examples/OSC.md and bridge/osc.py's docstring are checked against it by
``tests/bridge/test_docs_ranges.py``.

Immutable, read by any thread; the standard library only (``key`` names load :mod:`bridge.key`,
and with it numpy, only when a key other than ``auto`` is checked).
"""

from __future__ import annotations

import argparse
import functools
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from bridge.errors import ConfigError

__all__ = [
    "ANSWER_SETTINGS",
    "BEATS_PER_BAR_RANGE",
    "BPM_RANGE",
    "LENGTH_UNITS",
    "MODES",
    "SPECS",
    "STARTS",
    "SettingSpec",
    "add_setting_flags",
    "check_int",
    "settings_from_args",
    "spec",
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

Kind = Literal["int", "float", "choice", "bool", "key", "bindings"]


# ---- value checks (ConfigError naming the setting and the value) -------------------------------


def check_int(name: str, value: object, low: int, high: int) -> int:
    """``value`` as an int in ``low..high``; ConfigError for bools, floats and anything else."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    number = int(value)
    if not low <= number <= high:
        raise ConfigError(f"{name} must be {low}..{high}, got {number}")
    return number


def _check_float(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be a finite number, got {number}")
    if not low <= number <= high:
        raise ConfigError(f"{name} must be {low:g}..{high:g}, got {number!r}")
    return number


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _check_key(name: str, value: object) -> str:
    """``auto`` or a key name (``C``, ``F#m``, ``Bb``…), kept as given."""
    if value == "auto":
        return "auto"
    from bridge.key import parse_key  # numpy; imported only when a key is named

    try:
        parse_key(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be auto or a key like C, F#m, Bb; got {value!r}") from None
    return str(value)


def _check_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigError(f"{name} must be true or false (1 or 0), got {value!r}")


# ---- the table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettingSpec:
    """One setting: what it is, what it accepts and everywhere it can be set from.

    ``help`` is the ``--help`` text; ``{range}`` and ``{default}`` in it become
    :attr:`range_text` and :attr:`default_text`.  ``none_number`` is the number that means None
    on the command line and over OSC (``0 = all`` channels, ``-1 = random``), ``none_words``
    the words that do on the command line.  ``osc`` is the address after ``/antiphon/``;
    ``osc_also`` a setting an optional second OSC argument sets.  ``cc`` is what CC 0 and CC 127
    map to when a MIDI CC is bound to the setting (``--cc``), None if it cannot be.
    """

    name: str
    kind: Kind
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    optional: bool = False
    none_text: str = "none"
    none_number: int | None = None
    none_words: tuple[str, ...] = ()
    special: str = ""
    unit: str = ""
    flags: tuple[str, ...] = ()
    metavar: str | None = None
    osc: str | None = None
    osc_also: str | None = None
    cc: tuple[float, float] | None = None
    aliases: tuple[str, ...] = ()

    def check(self, value: object) -> Any:
        """``value`` checked (and converted: int → float) for this setting; ConfigError."""
        if value is None and self.optional:
            return None
        if self.kind == "int":
            return check_int(self.name, value, int(self.low or 0), int(self.high or 0))
        if self.kind == "float":
            low, high = float(self.low or 0), float(self.high or 0)
            return _check_float(self.name, value, low, high)
        if self.kind == "choice":
            return _check_choice(self.name, value, self.choices)
        if self.kind == "bool":
            return _check_bool(self.name, value)
        if self.kind == "key":
            return _check_key(self.name, value)
        raise TypeError(f"{self.name}: {self.kind} settings are checked by Settings")

    @property
    def bounds_text(self) -> str:
        """``1..512``, ``≥ 0`` (no upper bound worth saying); "" without a range."""
        if self.low is None or self.high is None:
            return ""
        if self.high >= 2**62:
            return f"≥ {self.low:g}"
        return f"{self.low:g}..{self.high:g}"

    @property
    def notes(self) -> list[str]:
        """The special values, as the docs write them: ``0 = all``, ``-1 = random``, ``0 = off``."""
        notes = [f"{self.none_number} = {self.none_text}"] if self.none_number is not None else []
        return notes + ([self.special] if self.special else [])

    @property
    def range_text(self) -> str:
        """``1..512``, ``(0, 1]``, ``1..16, 0 = all``, ``≥ 0, -1 = random``: as the docs say it."""
        return ", ".join([self.bounds_text, *self.notes]) if self.bounds_text else ""

    @property
    def default_text(self) -> str:
        """The default as ``--help`` shows it (``1``, ``0.95``, ``events``, ``all``…)."""
        return self.shown(self.default)

    def shown(self, value: object) -> str:
        """A value of this setting as ``--help`` and the docs write it (None: ``none_text``)."""
        if value is None:
            return self.none_text
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)

    @property
    def osc_type(self) -> str:
        """The OSC type tag of the argument: ``i``, ``f`` or ``s``."""
        return {"int": "i", "bool": "i", "float": "f"}.get(self.kind, "s")


SPECS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "length",
        "int",
        32,
        "answer length, counted in --unit: events (notes or chords; rests do not count), or "
        "beats/bars from its first note, {range} (default {default})",
        low=1,
        high=512,
        unit="events, beats or bars (length_unit)",
        flags=("--length",),
        metavar="N",
        osc="length",
        osc_also="length_unit",
        cc=(1, 128),
    ),
    SettingSpec(
        "length_unit",
        "choice",
        "events",
        "what --length counts (default {default})",
        choices=LENGTH_UNITS,
        flags=("--unit", "--length-unit"),
    ),
    SettingSpec(
        "temperature",
        "float",
        1.0,
        "sampling temperature {range}: lower is safer, higher wilder (default {default})",
        low=0.05,
        high=5.0,
        flags=("--temperature",),
        osc="temperature",
        cc=(0.05, 5.0),
    ),
    SettingSpec(
        "top_k",
        "int",
        0,
        "sample among the K likeliest tokens only, {range} (default {default})",
        low=0,
        high=1000,
        special="0 = off",
        unit="tokens",
        flags=("--top-k",),
        metavar="K",
        osc="top_k",
        cc=(0, 127),
    ),
    SettingSpec(
        "top_p",
        "float",
        0.95,
        "nucleus sampling: the smallest set of tokens with probability P, {range} "
        "(default {default})",
        low=0.05,
        high=1.0,
        flags=("--top-p",),
        metavar="P",
        osc="top_p",
        cc=(0.05, 1.0),
    ),
    SettingSpec(
        "bpm",
        "float",
        120.0,
        "tempo while no MIDI clock arrives, {range} (default {default}); incoming MIDI clock "
        "overrides it",
        low=BPM_RANGE[0],
        high=BPM_RANGE[1],
        unit="BPM",
        flags=("--bpm",),
        osc="tempo",
        cc=BPM_RANGE,
        aliases=("tempo",),
    ),
    SettingSpec(
        "mode",
        "choice",
        "call",
        "call: answer after a silence; trigger: only on OSC /antiphon/trigger, --trigger-cc or "
        "--trigger-note; listen: never (default {default})",
        choices=MODES,
        flags=("--mode",),
        osc="mode",
    ),
    SettingSpec(
        "in_channel",
        "int",
        None,
        "only listen to MIDI channel N, {range} (default {default})",
        low=1,
        high=16,
        optional=True,
        none_text="all",
        none_number=0,
        none_words=("all", "omni"),
        unit="MIDI channel",
        flags=("--in-channel",),
        metavar="N",
        osc="in_channel",
    ),
    SettingSpec(
        "out_channel",
        "int",
        1,
        "MIDI channel the answer plays on, {range} (default {default})",
        low=1,
        high=16,
        unit="MIDI channel",
        flags=("--out-channel", "--channel"),
        metavar="N",
        osc="channel",
    ),
    SettingSpec(
        "silence_beats",
        "float",
        1.0,
        "silence that ends a phrase, {range} beats (default {default})",
        low=0.25,
        high=16.0,
        unit="beats",
        flags=("--silence",),
        metavar="BEATS",
        osc="silence",
        cc=(0.25, 16.0),
        aliases=("silence",),
    ),
    SettingSpec(
        "start",
        "choice",
        "auto",
        "when the answer starts: now, on the next beat or bar; auto = now without MIDI clock, "
        "beat while a clock runs (default {default})",
        choices=STARTS,
        flags=("--start",),
        osc="start",
    ),
    SettingSpec(
        "beats_per_bar",
        "int",
        4,
        "beats in a bar, for --unit bars (and the bridge's --start bar), {range} "
        "(default {default})",
        low=BEATS_PER_BAR_RANGE[0],
        high=BEATS_PER_BAR_RANGE[1],
        unit="beats",
        flags=("--beats-per-bar",),
        metavar="N",
    ),
    SettingSpec(
        "seed",
        "int",
        None,
        "random seed: the same call then gets the same answers, {range} (default {default})",
        low=0,
        high=2**63 - 1,
        optional=True,
        none_text="random",
        none_number=-1,
        flags=("--seed",),
        metavar="N",
        osc="seed",
    ),
    SettingSpec(
        "passthrough",
        "bool",
        False,
        "also send what you play straight to the output port",
        flags=("--passthrough",),
        osc="passthrough",
    ),
    SettingSpec(
        "chord_window_ms",
        "float",
        30.0,
        "notes starting within MS milliseconds form one chord, {range} (default {default})",
        low=0.0,
        high=200.0,
        unit="ms",
        flags=("--chord-window",),
        metavar="MS",
        cc=(0.0, 200.0),
        aliases=("chord_window",),
    ),
    SettingSpec(
        "trigger_cc",
        "int",
        None,
        "a MIDI CC (value >= 64) that triggers an answer (default {default})",
        low=0,
        high=127,
        optional=True,
        none_words=("off", "none"),
        flags=("--trigger-cc",),
        metavar="CC",
    ),
    SettingSpec(
        "trigger_note",
        "int",
        None,
        "a MIDI note that triggers an answer and is not part of the phrase (default {default})",
        low=0,
        high=127,
        optional=True,
        none_words=("off", "none"),
        flags=("--trigger-note",),
        metavar="NOTE",
    ),
    SettingSpec(
        "cc_bindings",
        "bindings",
        MappingProxyType({}),
        "setting name → MIDI CC that drives it (--cc SETTING=CC)",
    ),
    SettingSpec(
        "key",
        "key",
        "auto",
        "the answer's key: auto (heard from each call) or C, F#m, Bb… (default {default})",
        flags=("--key",),
        metavar="KEY",
        osc="key",
    ),
    SettingSpec(
        "key_lock",
        "float",
        0.8,
        "how strictly the answer keeps to its key, {range}: 0 = free, 1 = scale tones only, in "
        "between out-of-key notes are made rarer (default {default})",
        low=0.0,
        high=1.0,
        flags=("--key-lock",),
        metavar="0..1",
        osc="key_lock",
        cc=(0.0, 1.0),
    ),
)
"""Every setting, in :class:`bridge.config.Settings`' field order."""

_BY_NAME: Mapping[str, SettingSpec] = MappingProxyType({s.name: s for s in SPECS})

ANSWER_SETTINGS = (
    "length",
    "length_unit",
    "temperature",
    "top_k",
    "top_p",
    "key",
    "key_lock",
    "seed",
)
"""The settings that shape an answer: ``antiphon bridge`` and ``antiphon continue`` both take
their flags, with the same names, defaults, ranges and help."""


def spec(name: str) -> SettingSpec:
    """The spec of setting ``name`` (a field name); KeyError if there is none."""
    return _BY_NAME[name]


# ---- command-line flags --------------------------------------------------------------------------


@functools.cache
def _flag_type(name: str) -> Callable[[str], Any] | None:
    """The argparse ``type`` of a setting's flag (None: a string, checked by Settings); one
    function per setting, so both commands' flags are the same."""
    s = spec(name)
    if s.kind == "float":
        return float
    if s.kind != "int":
        return None
    if s.none_number is None and not s.none_words:
        return int

    def parse(text: str) -> int | None:
        if text.strip().lower() in s.none_words:
            return None
        try:
            number = int(text)
        except ValueError:
            words = f" or {s.none_words[0]!r}" if s.none_words else ""
            raise argparse.ArgumentTypeError(
                f"expected {s.low:g}..{s.high:g}{words}, got {text!r}"
            ) from None
        return None if number == s.none_number else number

    parse.__name__ = s.name
    return parse


def add_setting_flags(
    group: Any,
    names: Iterable[str],
    defaults: Any = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Add the flags of the settings ``names`` to ``group`` (an argparse parser or group).

    Each flag stores into the setting's own name (``--silence`` → ``silence_beats``); its default
    is ``defaults``' (a Settings) or the table's.  ``overrides`` replaces argparse keywords of one
    setting, for a command where it means something else (``continue``'s ``--bpm``).  Called from
    the main thread while the parsers are built."""
    for name in names:
        s = spec(name)
        default = s.default if defaults is None else getattr(defaults, name)
        options: dict[str, Any] = {
            "dest": name,
            "default": default,
            "help": s.help.format(range=s.range_text, default=s.shown(default)),
        }
        if s.kind == "bool":
            options["action"] = "store_true"
        else:
            options["type"] = _flag_type(name)
            options["metavar"] = s.metavar
            if s.choices:
                options["choices"] = s.choices
                del options["metavar"]
        options.update((overrides or {}).get(name, {}))
        group.add_argument(*s.flags, **{k: v for k, v in options.items() if v is not None})


def settings_from_args(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """``{setting: value}`` of the flags :func:`add_setting_flags` added for ``names``."""
    return {name: getattr(args, name) for name in names}
