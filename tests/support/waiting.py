"""Waiting for other threads and processes in tests: the one ``wait_for`` / ``wait_until``.

Real time (the bridge's threads and peers run on it); a test on a fake clock steps the clock
instead.  Every suite imports it from here (``support.waiting``); only the standard library.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["wait_for", "wait_until"]

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.01) -> T:
    """Poll ``predicate`` until it returns something truthy and return that; AssertionError
    naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.002) -> bool:
    """Poll ``predicate`` until it holds; False (no exception) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
