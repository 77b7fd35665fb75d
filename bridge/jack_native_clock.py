"""JACK frame time for the native JACK backend: the engine's clock.

JACK counts time in frames (``jack_nframes_t``, 32 bits, wrapping after 24.8 hours at 48 kHz);
a DAW on JACK places its notes and MIDI clock ticks in frames.  On a loaded machine (and always
with the dummy driver after an xrun) the frame counter and the monotonic clock part ways, so a
bridge that schedules on ``time.monotonic`` drifts off the DAW's grid.  With the native backend
the engine's clock *is* the frame counter: :class:`FrameClock` returns seconds
``t0 + (frame - f0) / rate``.  Input stamps (``last_frame_time + offset``), the tempo grid and
the scheduler's due times all live in that one domain, and a due time converts back to the
exact frame it was computed from.

While no JACK client is attached (before opening, after the server went away) the clock runs on
the monotonic fallback; it never goes backwards, across detach and re-attach to a restarted
server (whose frame counter starts again at 0).

The rings between the process callback and Python live in the C core
(:mod:`bridge.jack_native_process`).

Threads: :class:`FrameClock` is called by any non-realtime thread (one short lock).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = [
    "FRAME_MASK",
    "FrameClock",
    "frame_delta",
]

FRAME_MASK = 0xFFFF_FFFF
"""JACK frame times are unsigned 32-bit and wrap."""


def frame_delta(later: int, earlier: int) -> int:
    """``later - earlier`` in frames across the 32-bit wrap (−2³¹ … 2³¹−1)."""
    d = (later - earlier) & FRAME_MASK
    return d - 0x1_0000_0000 if d >= 0x8000_0000 else d


class FrameClock:
    """The engine's clock in seconds, on a JACK client's frame counter while one is attached.

    ``clock()`` is non-decreasing.  :meth:`attach` (a client opened) continues from the current
    value; :meth:`detach` (client closing, server lost) continues on ``fallback``.
    :meth:`to_frame` / :meth:`from_frame` convert between seconds and 32-bit frame times of the
    attached client.  Any non-realtime thread; the process callback never calls it.
    """

    def __init__(self, fallback: Callable[[], float] = time.monotonic) -> None:
        self._fallback = fallback
        self._lock = threading.Lock()
        self._read: Callable[[], int] | None = None
        self._rate = 0
        self._f0 = 0  # 64-bit frame at which the clock read t0
        self._t0 = 0.0
        self._last32 = 0  # the newest frame time read, and its 64-bit extension
        self._last64 = 0
        self._fb_origin = fallback()  # fallback segment: t = _fb_t + fallback() - _fb_origin
        self._fb_t = 0.0
        self._latest = 0.0
        self.attaches = 0

    @property
    def attached(self) -> bool:
        return self._read is not None

    @property
    def rate(self) -> int:
        """Frames per second of the attached client (0 while detached)."""
        return self._rate if self._read is not None else 0

    def __call__(self) -> float:
        with self._lock:
            return self._now_locked()

    def attach(self, read_frame: Callable[[], int], rate: int) -> None:
        """Run on ``read_frame()`` (``jack_frame_time``) at ``rate`` frames/s from now on."""
        if rate <= 0:
            raise ValueError(f"sample rate must be > 0, got {rate}")
        with self._lock:
            t = self._now_locked()
            frame = read_frame() & FRAME_MASK
            self._read, self._rate = read_frame, rate
            self._last32 = frame
            self._last64 = self._f0 = frame
            self._t0 = t
            self.attaches += 1

    def detach(self) -> None:
        """Run on the fallback clock from now on (the client is going away). Idempotent."""
        with self._lock:
            if self._read is None:
                return
            t = self._latest
            self._read = None
            self._fb_t, self._fb_origin = t, self._fallback()

    def frame_now(self) -> int | None:
        """The attached client's current frame time (32 bits), None while detached."""
        with self._lock:
            if self._read is None:
                return None
            self._now_locked()
            return self._last32

    def to_frame(self, t: float) -> int | None:
        """The 32-bit frame time of clock time ``t``; None while detached."""
        with self._lock:
            if self._read is None:
                return None
            return (self._f0 + round((t - self._t0) * self._rate)) & FRAME_MASK

    def from_frame(self, frame: int) -> float:
        """Clock time of the 32-bit frame time ``frame`` (within 2³¹ frames of the newest one
        read); the current time while detached."""
        with self._lock:
            if self._read is None:
                return self._now_locked()
            f64 = self._last64 + frame_delta(frame, self._last32)
            return self._t0 + (f64 - self._f0) / self._rate

    def _now_locked(self) -> float:
        read = self._read
        if read is None:
            t = self._fb_t + self._fallback() - self._fb_origin
        else:
            try:
                frame = read() & FRAME_MASK
            except Exception:  # a client torn down under us: hold the last value
                return self._latest
            step = frame_delta(frame, self._last32)
            if step > 0:
                self._last32, self._last64 = frame, self._last64 + step
            t = self._t0 + (self._last64 - self._f0) / self._rate
        if t > self._latest:
            self._latest = t
        return self._latest
