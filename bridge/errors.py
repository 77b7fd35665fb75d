"""Antiphon's exception tree.

One root, :class:`AntiphonError`; every subclass also inherits the builtin it
refines, so callers may catch either.  The library raises these; the wire
(MIDI callback, OSC dispatcher) catches, counts and logs instead of raising.
"""

from __future__ import annotations

__all__ = [
    "AntiphonError",
    "ConfigError",
    "ModelError",
    "PortError",
    "TokenError",
]


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
