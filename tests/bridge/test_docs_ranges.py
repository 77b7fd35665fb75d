"""Every place that describes a setting, checked against the one table, ``bridge.settings_spec``.

- the OSC tables people read (README.md, examples/OSC.md, bridge/osc.py's docstring): every
  address the bridge answers is listed, and each setting's row gives the table's argument type,
  range, special values (``0 = all``), choices and default;
- the OSC server and Settings: each range is accepted at both ends and refused just outside;
- the setting flags of ``antiphon bridge`` and ``antiphon continue``: the table's names, defaults
  and range in ``--help``, accepted at both ends and refused outside; README lists each flag;
- the setting keys of ``/antiphon/status`` and the settings ``--cc`` may bind.
"""

from __future__ import annotations

import argparse
import math
import re
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pythonosc.osc_message_builder import build_msg

import bridge.osc
from bridge import cli
from bridge.config import CC_SCALES, Settings, SettingsBox
from bridge.errors import ConfigError
from bridge.osc import OscControl
from bridge.settings_spec import ANSWER_SETTINGS, SPECS, SettingSpec, spec

REPO = Path(__file__).resolve().parents[2]
ADDRESS = re.compile(r"/antiphon/[a-z_/]+")
RANGE = re.compile(r"(-?\d+(?:\.\d+)?)\.\.(-?\d+(?:\.\d+)?)")
DEFAULT = re.compile(r"\((?:default )?(-?\d+(?:\.\d+)?|all|random|none)\)")
SENT = {
    "/antiphon/note",
    "/antiphon/error",
    "/antiphon/answer/begin",
    "/antiphon/answer/plan",
    "/antiphon/answer/end",
}
"""Addresses the bridge sends (events out, refusals), documented beside those it answers."""

OSC_SETTINGS = [s for s in SPECS if s.osc is not None]
RANGED = [s for s in SPECS if s.low is not None and s.high is not None]
FLAGGED = [s for s in SPECS if s.flags]


class RecordingController:
    """The engine's Controller on a real SettingsBox."""

    def __init__(self) -> None:
        self.box = SettingsBox()

    def update_settings(self, **changes: Any) -> Settings:
        return self.box.update(**changes)

    def trigger(self) -> None: ...

    def stop_answer(self) -> None: ...

    def panic(self) -> None: ...

    def swap_model(self, name: str) -> str:
        return name

    def status(self) -> dict[str, object]:
        return self.box.get().to_dict()


def _table_rows(path: Path) -> dict[str, tuple[str, str]]:
    """address → (argument types, range text) of every row of the markdown OSC tables (the
    first row naming it; a later row for a setting's address is recorded in ``TWICE``)."""
    rows: dict[str, tuple[str, str]] = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`/antiphon/"):
            for address in ADDRESS.findall(cells[0]):
                if address in rows:
                    TWICE.add((path.name, address))
                rows.setdefault(address, (cells[1], cells[2]))
    return rows


TWICE: set[tuple[str, str]] = set()


def _docstring_rows() -> dict[str, tuple[str, str]]:
    """address → ("", description) of the address table in bridge/osc.py's docstring."""
    rows: dict[str, tuple[str, str]] = {}
    for line in (bridge.osc.__doc__ or "").splitlines():
        match = re.match(r"``(/antiphon/[a-z_/]+)[^`]*``\s+(.*)", line.strip())
        if match:
            rows[match[1]] = ("", match[2])
            for other in re.findall(r"``(/antiphon/[a-z_/]+)``", match[2]):  # "… likewise"
                rows.setdefault(other, ("", match[2]))
    return rows


README_TEXT = (REPO / "README.md").read_text()
SOURCES = {
    "README.md": _table_rows(REPO / "README.md"),
    "examples/OSC.md": _table_rows(REPO / "examples" / "OSC.md"),
    "bridge/osc.py": _docstring_rows(),
}


def _address(setting: SettingSpec) -> str:
    return f"/antiphon/{setting.osc}"


# ---- the docs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_every_address_is_documented(source: str) -> None:
    control = OscControl("127.0.0.1", 0, RecordingController())
    answered = set(control.addresses)
    control.stop()
    missing = answered - set(SOURCES[source])
    unknown = set(SOURCES[source]) - answered - SENT  # the bridge's own messages may be listed
    assert (missing, unknown) == (set(), set()), (
        f"{source}: undocumented {sorted(missing)}, not answered {sorted(unknown)}"
    )


@pytest.mark.parametrize("source", sorted(SOURCES))
@pytest.mark.parametrize("setting", OSC_SETTINGS, ids=lambda s: s.name)
def test_documented_setting_rows_are_the_tables(source: str, setting: SettingSpec) -> None:
    types, text = SOURCES[source][_address(setting)]
    where = f"{source}, {_address(setting)}"
    assert (Path(source).name, _address(setting)) not in TWICE, f"{where}: two rows"
    if types:  # the markdown tables name each argument's OSC type
        assert types.startswith(f"`{setting.osc_type}`"), f"{where}: type {types}"
    bounds = setting.bounds_text  # "1..16", "(0, 1]", "≥ 0"
    found = RANGE.search(text)
    if found and ".." in bounds:  # "5.0" and "5" are the same bound
        assert (float(found[1]), float(found[2])) == (setting.low, setting.high), (
            f"{where}: documents {found[0]}, the table says {bounds}"
        )
    else:
        assert bounds in text, f"{where}: {text!r} does not say {bounds}"
    if setting.unit in ("BPM", "beats", "ms"):  # units of measure; "events" etc. are implied
        assert re.search(rf"\d {setting.unit}\b", text), f"{where}: no unit {setting.unit}"
    for special in setting.notes:  # "0 = all", "-1 = random", "0 = off"
        number = special.split(" = ")[0]
        assert re.search(rf"(?<![\d.]){re.escape(number)} = ", text), f"{where}: no {special}"
    also = [] if setting.osc_also is None else spec(setting.osc_also).choices
    for choice in (*setting.choices, *also):
        assert f"`{choice}`" in text, f"{where}: {choice} not listed"
    default = DEFAULT.search(text)
    if default:
        shown = default[1]
        if setting.kind in ("int", "float") and shown[0].isdigit():
            assert float(shown) == setting.default, f"{where}: default {shown}"
        else:
            assert shown == setting.default_text, f"{where}: default {shown}"


def test_readme_lists_every_setting_flag() -> None:
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", README_TEXT))
    missing = [s.flags[0] for s in FLAGGED if s.flags[0] not in flags]
    assert missing == [], f"README.md does not mention {missing}"


def test_status_reply_names_settings_by_their_table_names() -> None:
    sheet = (REPO / "examples" / "OSC.md").read_text()
    row = next(line for line in sheet.splitlines() if "every setting (" in line)
    named = re.findall(r"`([a-z_]+)`", row.split("every setting (")[1].split(")")[0])
    assert named and set(named) <= {s.name for s in SPECS}, named
    assert list(Settings().to_dict()) == [s.name for s in SPECS]  # the status' setting keys


# ---- the OSC server and Settings ----------------------------------------------------------------


@pytest.fixture
def osc() -> Iterator[tuple[OscControl, RecordingController, tuple[str, int]]]:
    controller = RecordingController()
    control = OscControl("127.0.0.1", 0, controller)
    replies = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # refusals are sent here
    replies.bind(("127.0.0.1", 0))
    try:
        yield control, controller, replies.getsockname()
    finally:
        control.stop()
        replies.close()


def _accepts(
    osc: tuple[OscControl, RecordingController, tuple[str, int]], address: str, value: float
) -> bool:
    control, _, sender = osc
    errors = control.errors
    control.handle_datagram(build_msg(address, [value]).dgram, sender)
    return control.errors == errors


def _edges(setting: SettingSpec) -> tuple[list[float], list[float]]:
    """Values the table says are accepted, and values just outside it that are refused."""
    low, high = float(setting.low or 0), float(setting.high or 0)
    step = 1.0 if setting.kind == "int" else 0.001
    inside = [low, min(high, 2**31 - 1)]
    outside = [low - step] + ([high + step] if high < 2**31 else [])
    return inside, [v for v in outside if v != setting.none_number]


@pytest.mark.parametrize("setting", [s for s in RANGED if s.osc], ids=lambda s: s.name)
def test_osc_takes_the_tables_range(setting: SettingSpec, osc: Any) -> None:
    cast = int if setting.kind == "int" else float
    address = _address(setting)
    inside, outside = _edges(setting)
    for value in inside:
        assert _accepts(osc, address, cast(value)), f"{address} refuses {value:g}"
        assert getattr(osc[1].box.get(), setting.name) == pytest.approx(value)  # float32
    for value in outside:
        assert not _accepts(osc, address, cast(value)), f"{address} accepts {value:g}"
    if setting.none_number is not None:
        assert _accepts(osc, address, setting.none_number)
        assert getattr(osc[1].box.get(), setting.name) is None


def _as_status_reports_it(value: float) -> float:
    """``value`` as ``/antiphon/status`` carries it: an OSC float, 32 bits."""
    return float(struct.unpack(">f", struct.pack(">f", value))[0])


@pytest.mark.parametrize("setting", [s for s in RANGED if s.kind == "float"], ids=lambda s: s.name)
def test_what_status_reports_is_accepted_back(setting: SettingSpec) -> None:
    """A controller that reads the status and sends its values back is never refused: each end
    of a float range, and the values just inside it, still lie in the range as 32-bit floats
    (a top_p open at 0 let 5e-324 in, which the status reported as 0.0)."""
    low, high = float(setting.low or 0), float(setting.high or 0)
    for value in (low, math.nextafter(low, high), math.nextafter(high, low), high):
        Settings(**{setting.name: value})  # accepted as set …
        Settings(**{setting.name: _as_status_reports_it(value)})  # … and as reported


@pytest.mark.parametrize("setting", RANGED, ids=lambda s: s.name)
def test_settings_take_the_tables_range(setting: SettingSpec) -> None:
    inside, outside = _edges(setting)
    for value in inside:
        number = int(value) if setting.kind == "int" else value
        if setting.name == "trigger_cc" and number in (64, 127):
            number = 119  # reserved CCs (sustain, channel mode) are refused, see test_config
        assert getattr(Settings(**{setting.name: number}), setting.name) == number
    for value in outside:
        with pytest.raises(ConfigError, match=setting.name):
            Settings(**{setting.name: int(value) if setting.kind == "int" else value})


# ---- the command line ------------------------------------------------------------------------


def _options(command: str) -> dict[str, argparse.Action]:
    parser = cli.build_parser(None if command == "continue" else command)
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {a.dest: a for a in commands.choices[command]._actions if a.option_strings}


BRIDGE = _options("bridge")
CONTINUE = _options("continue")


def _bridge_settings(flag: str, value: float) -> Settings | None:
    """The Settings ``antiphon bridge FLAG VALUE`` runs with; None if refused."""
    text = str(int(value)) if float(value).is_integer() else f"{value:g}"
    try:
        args = cli.build_parser("bridge").parse_args(["bridge", flag, text])
        return cli._settings(args)
    except (ConfigError, SystemExit):
        return None


@pytest.mark.parametrize("setting", FLAGGED, ids=lambda s: s.name)
def test_bridge_flags_are_the_tables(
    setting: SettingSpec, capsys: pytest.CaptureFixture[str]
) -> None:
    option = BRIDGE[setting.name]
    assert tuple(option.option_strings) == setting.flags
    assert option.default == setting.default
    assert option.choices == (setting.choices or None)
    if "{range}" in setting.help:
        assert setting.range_text in (option.help or "")
    if setting.low is None or setting.high is None or setting.name == "trigger_cc":
        return  # trigger_cc: reserved CCs inside the range, see test_config
    inside, outside = _edges(setting)
    for value in inside:
        parsed = _bridge_settings(setting.flags[0], value)
        assert parsed is not None and getattr(parsed, setting.name) == value, (
            f"{setting.flags[0]} {value:g}"
        )
    for value in outside:
        assert _bridge_settings(setting.flags[0], value) is None, f"{setting.flags[0]} {value:g}"
    if setting.none_number is not None:
        parsed = _bridge_settings(setting.flags[0], setting.none_number)
        assert parsed is not None and getattr(parsed, setting.name) is None
    capsys.readouterr()  # argparse's complaints about the values refused on purpose


def test_every_flagged_setting_is_a_bridge_flag_and_continue_shares_the_answer_flags() -> None:
    assert {s.name for s in FLAGGED} <= set(BRIDGE)
    for name in (*ANSWER_SETTINGS, "beats_per_bar"):
        ours, theirs = BRIDGE[name], CONTINUE[name]
        assert (ours.option_strings, ours.help, ours.default, ours.type) == (
            theirs.option_strings,
            theirs.help,
            theirs.default,
            theirs.type,
        ), name
    assert CONTINUE["bpm"].type is float and CONTINUE["bpm"].default is None  # the file's tempo
    assert spec("bpm").range_text in (CONTINUE["bpm"].help or "")


def test_cc_flag_lists_the_bindable_settings() -> None:
    assert f"settings: {', '.join(CC_SCALES)} (" in (BRIDGE["cc"].help or "")
    assert set(CC_SCALES) == {s.name for s in SPECS if s.cc is not None}
