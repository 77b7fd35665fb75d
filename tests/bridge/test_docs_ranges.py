"""The OSC tables people read — README.md, examples/OSC.md and bridge/osc.py's docstring — checked
against what the bridge does: every address it answers is listed in each, every documented
``lo..hi`` range is accepted at both ends and refused just outside (unless the doc names that
value, like ``0 = all``), and every documented default is ``Settings()``'s.

Until the settings live in one spec table, this is what keeps the copies from drifting.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pythonosc.osc_message_builder import build_msg

import bridge.osc
from bridge.config import Settings, SettingsBox
from bridge.osc import OscControl

REPO = Path(__file__).resolve().parents[2]
ADDRESS = re.compile(r"/antiphon/[a-z_/]+")
RANGE = re.compile(r"(-?\d+(?:\.\d+)?)\.\.(-?\d+(?:\.\d+)?)")
DEFAULT = re.compile(r"\((?:default )?(-?\d+(?:\.\d+)?)\)")
SENT = {
    "/antiphon/note",
    "/antiphon/error",
    "/antiphon/answer/begin",
    "/antiphon/answer/plan",
    "/antiphon/answer/end",
}
"""Addresses the bridge sends (events out, refusals), documented beside those it answers."""


class RecordingController:
    """The engine's Controller on a real SettingsBox; remembers what was accepted."""

    def __init__(self) -> None:
        self.box = SettingsBox()
        self.accepted: list[dict[str, Any]] = []

    def update_settings(self, **changes: Any) -> Settings:
        new = self.box.update(**changes)
        self.accepted.append(changes)
        return new

    def trigger(self) -> None: ...

    def stop_answer(self) -> None: ...

    def panic(self) -> None: ...

    def swap_model(self, name: str) -> str:
        return name

    def status(self) -> dict[str, object]:
        return {}


def _table_rows(path: Path) -> dict[str, tuple[str, str]]:
    """address → (argument types, range text) of every row of the markdown OSC tables."""
    rows: dict[str, tuple[str, str]] = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`/antiphon/"):
            for address in ADDRESS.findall(cells[0]):
                rows.setdefault(address, (cells[1], cells[2]))
    return rows


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


README = _table_rows(REPO / "README.md")
SOURCES = {
    "README.md": README,
    "examples/OSC.md": _table_rows(REPO / "examples" / "OSC.md"),
    "bridge/osc.py": _docstring_rows(),
}


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


CASES = [
    (source, address)
    for source, rows in sorted(SOURCES.items())
    for address, (_, text) in sorted(rows.items())
    if RANGE.search(text)
]


@pytest.mark.parametrize(("source", "address"), CASES)
def test_documented_ranges_hold(source: str, address: str, osc: Any) -> None:
    text = SOURCES[source][address][1]
    whole = README[address][0].startswith("`i`")  # README says each argument's OSC type
    low, high = (float(x) for x in RANGE.search(text).groups())  # type: ignore[union-attr]
    step = 1.0 if whole else 0.001
    cast = int if whole else float
    assert _accepts(osc, address, cast(low)), f"{source}: {address} refuses {low:g}"
    assert _accepts(osc, address, cast(high)), f"{source}: {address} refuses {high:g}"
    for outside in (low - step, high + step):
        if re.search(rf"(?<![\d.]){re.escape(f'{cast(outside):g}')} = ", text):
            continue  # a documented special value, like "0 = all"
        assert not _accepts(osc, address, cast(outside)), (
            f"{source}: {address} documents {low:g}..{high:g} but accepts {outside:g}"
        )
    default = DEFAULT.search(text)
    if default:
        _, controller, _ = osc
        (name,) = controller.accepted[0]  # the setting this address sets
        assert getattr(Settings(), name) == pytest.approx(float(default[1])), (
            f"{source}: {address} documents the default {default[1]}"
        )


# ---- the command line ------------------------------------------------------------------------


def _bridge_options() -> list[Any]:
    from bridge.cli import build_parser

    parser = build_parser("bridge")
    (commands,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return [
        a
        for a in commands.choices["bridge"]._actions  # numbers (not --cc NAME=CC)
        if a.option_strings and a.help and RANGE.search(a.help) and a.type not in (None, str)
    ]


def _bridge_settings(flag: str, value: float) -> Settings | None:
    """The Settings ``antiphon bridge FLAG VALUE`` runs with; None if refused."""
    from bridge import cli
    from bridge.errors import ConfigError

    try:
        args = cli.build_parser("bridge").parse_args(["bridge", flag, f"{value:g}"])
        return cli._settings(args)
    except (ConfigError, SystemExit):
        return None


@pytest.mark.parametrize("option", _bridge_options(), ids=lambda a: a.option_strings[0])
def test_bridge_help_ranges_hold(option: Any, capsys: pytest.CaptureFixture[str]) -> None:
    flag = option.option_strings[0]
    low, high = (float(x) for x in RANGE.search(option.help).groups())  # type: ignore[union-attr]
    step = 1.0 if low.is_integer() and high.is_integer() else 0.001
    default = Settings()
    at_low = _bridge_settings(flag, low)
    assert at_low is not None and _bridge_settings(flag, high) is not None, (
        f"{flag} refuses its documented {low:g}..{high:g}"
    )
    for outside in (low - step, high + step):
        if re.search(rf"(?<![\d.]){re.escape(f'{outside:g}')} = ", option.help):
            continue
        assert _bridge_settings(flag, outside) is None, (
            f"{flag} documents {low:g}..{high:g} but accepts {outside:g}"
        )
    changed = [
        name for name in default.to_dict() if getattr(at_low, name) != getattr(default, name)
    ]
    if changed and option.default is not None:  # the flag's default is the setting's
        (name,) = changed
        assert option.default == getattr(default, name), f"{flag} default"
    capsys.readouterr()  # argparse's complaints about the values refused on purpose
