"""Antiphon's exception tree.

One root, :class:`AntiphonError`; every subclass also inherits the builtin it
refines, so callers may catch either.  The library raises these; the wire
(MIDI callback, OSC dispatcher) catches, counts and logs instead of raising.
"""

from __future__ import annotations

import sys

__all__ = [
    "PROG",
    "AntiphonError",
    "ConfigError",
    "ModelError",
    "PortError",
    "TokenError",
    "fail",
]

PROG = "antiphon"
"""The command's name: argparse's ``prog`` and the prefix of every error line."""


class AntiphonError(Exception):
    """Root of every error Antiphon raises on purpose."""


class ConfigError(AntiphonError, ValueError):
    """A setting is out of range or of the wrong kind."""


class TokenError(AntiphonError, ValueError):
    """A token sequence or token scheme is invalid."""


class ModelError(AntiphonError, ValueError):
    """A model file is missing, corrupt, or not an Antiphon model."""


class PortError(AntiphonError, OSError):
    """No MIDI backend or port could be opened."""


def fail(message: str, status: int) -> int:
    """Main thread of a command: write one ``antiphon: error: MESSAGE`` line on stderr and return
    ``status`` (the exit code), so every subcommand reports errors the same way."""
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return status
