"""The native JACK backend's process callback: the C core (``bridge/_jack_process.c``) seen
from Python through ctypes.

JACK calls ``ap_process`` in its realtime thread every period; it never takes the GIL, so a
Python thread that holds it (or a loaded machine) can no longer make the callback miss its
period.  Python talks to it only through the core's two lock-free rings and its counters:

* :meth:`ProcessCore.in_pop` / :meth:`~ProcessCore.in_watermark`: the input consumer
  (:class:`~bridge.jack_native.JackMidiInput`'s thread);
* :meth:`ProcessCore.out_push`: the output producer (:class:`~bridge.jack_native.JackOutput`,
  one thread at a time under its lock);
* :meth:`ProcessCore.attach` / :meth:`~ProcessCore.detach` / :meth:`~ProcessCore.register`:
  the thread that opens and closes the client, while the client is inactive.

:class:`JackApi` holds the libjack functions the core calls: :func:`jack_client_api` takes them
from the libjack that JACK-Client loaded (so ``pw-jack`` works); tests pass fakes and call
:meth:`ProcessCore.process` themselves.

The extension is built by ``pip install`` (setup.py, optional): without a C compiler the
native backend is unavailable (:func:`load_error` says why) and the bridge uses RtMidi on JACK.
"""

from __future__ import annotations

import ctypes
import importlib
import weakref
from typing import Any

from bridge.errors import PortError

__all__ = ["IN_WIDTH", "OUT_WIDTH", "JackApi", "ProcessCore", "jack_client_api", "load_error"]

IN_WIDTH = 4
"""Bytes of one input event in the core (``AP_IN_WIDTH``): longer ones are counted oversized."""
OUT_WIDTH = 16
"""Bytes of one output event in the core (``AP_OUT_WIDTH``)."""

_c_u32 = ctypes.c_uint32
_p = ctypes.c_void_p

PROCESS = ctypes.CFUNCTYPE(ctypes.c_int, _c_u32, _p)
"""JackProcessCallback: ``int (*)(jack_nframes_t, void *)``."""


class MidiEvent(ctypes.Structure):
    """jack_midi_event_t."""

    _fields_ = (
        ("time", _c_u32),
        ("size", ctypes.c_size_t),
        ("buffer", ctypes.POINTER(ctypes.c_uint8)),
    )


class JackApi(ctypes.Structure):
    """The libjack functions the core calls (``ap_jack_api``), as addresses."""

    _fields_ = (
        ("port_get_buffer", _p),
        ("midi_get_event_count", _p),
        ("midi_event_get", _p),
        ("midi_clear_buffer", _p),
        ("midi_event_write", _p),
        ("last_frame_time", _p),
    )


_STAT_NAMES = (
    "cycles",
    "out_written",
    "out_late",
    "out_late_frames_max",
    "out_full",
    "skipped",
    "extra_note_offs",
    "repeated",
    "input_repeats",
    "in_rejected",
    "in_oversized",
    "out_rejected",
)


class _Stats(ctypes.Structure):
    _fields_ = tuple((name, ctypes.c_uint64) for name in _STAT_NAMES)


_lib: ctypes.CDLL | None = None
_load_error: str | None = None


def _load() -> ctypes.CDLL:
    global _lib, _load_error
    if _lib is not None:
        return _lib
    if _load_error is None:
        try:
            built = importlib.import_module("bridge._jack_process")  # found wherever installed
            lib = ctypes.CDLL(built.__file__)
            _declare(lib)
        except (ImportError, OSError) as err:
            _load_error = (
                f"its C process callback bridge._jack_process is not built ({err}); "
                "reinstall Antiphon with a C compiler (`pip install .`)"
            )
        except AttributeError as err:  # an older build than this Python code
            _load_error = (
                f"its C process callback is out of date ({err}); rebuild it (`pip install .`)"
            )
        else:
            _lib = lib
            return lib
    raise PortError(f"the native JACK backend is unavailable: {_load_error}")


def load_error() -> str:
    """Why the C core cannot be loaded ("" when it can)."""
    try:
        _load()
    except PortError:
        return _load_error or "unknown"
    return ""


def _declare(lib: ctypes.CDLL) -> None:
    lib.ap_new.restype = _p
    lib.ap_new.argtypes = (_c_u32, _c_u32)
    lib.ap_release.restype = None
    lib.ap_release.argtypes = (_p,)
    lib.ap_attach.restype = ctypes.c_int
    lib.ap_attach.argtypes = (_p, ctypes.POINTER(JackApi), _p, _p, _p)
    lib.ap_detach.restype = None
    lib.ap_detach.argtypes = (_p,)
    lib.ap_register.restype = ctypes.c_int
    lib.ap_register.argtypes = (_p, _p, _p)
    lib.ap_process.restype = ctypes.c_int
    lib.ap_process.argtypes = (_c_u32, _p)
    lib.ap_in_pop.restype = _c_u32
    lib.ap_in_pop.argtypes = (_p, ctypes.POINTER(_c_u32), ctypes.c_char_p)
    lib.ap_period_start.restype = ctypes.c_int
    lib.ap_period_start.argtypes = (_p, ctypes.POINTER(_c_u32))
    lib.ap_in_watermark.restype = ctypes.c_int
    lib.ap_in_watermark.argtypes = (_p, ctypes.POINTER(_c_u32))
    lib.ap_in_pending.restype = _c_u32
    lib.ap_in_pending.argtypes = (_p,)
    lib.ap_out_push.restype = ctypes.c_int
    lib.ap_out_push.argtypes = (_p, _c_u32, ctypes.c_char_p, _c_u32, ctypes.c_int)
    lib.ap_out_pending.restype = _c_u32
    lib.ap_out_pending.argtypes = (_p,)
    lib.ap_get_stats.restype = None
    lib.ap_get_stats.argtypes = (_p, ctypes.POINTER(_Stats))


class ProcessCore:
    """One C core: its rings (power-of-two capacities), its late-call state and counters.

    Raises PortError if the extension is not built.  Freed when the last reference goes,
    unless still attached (a client that was never closed may still call it).
    """

    def __init__(self, in_capacity: int, out_capacity: int) -> None:
        for name, n in (("input", in_capacity), ("output", out_capacity)):
            if n < 1 or n & (n - 1):
                raise ValueError(f"{name} ring capacity must be a power of two, got {n}")
        self._lib = _load()
        ptr = self._lib.ap_new(in_capacity, out_capacity)
        if not ptr:
            raise MemoryError("cannot allocate the JACK process core")
        self._ptr: int = ptr
        weakref.finalize(self, self._lib.ap_release, ptr)
        self._api: JackApi | None = None
        self._frame = _c_u32()
        self._data = ctypes.create_string_buffer(IN_WIDTH)
        self._watermark = _c_u32()
        self.in_capacity, self.out_capacity = in_capacity, out_capacity

    # ----- the thread that opens and closes the client (client inactive) -----------------------
    def attach(self, api: JackApi, client: int, in_port: int, out_port: int) -> None:
        """Point the callback at ``client``'s ports; a new timeline (the rings are kept)."""
        self._api = api  # the core copies it; kept for the fakes' function objects' sake
        if not self._lib.ap_attach(self._ptr, ctypes.byref(api), client, in_port, out_port):
            raise ValueError("a libjack function is missing from the API table")

    def detach(self) -> None:
        """The callback does nothing from now on (after the client is deactivated)."""
        self._lib.ap_detach(self._ptr)

    def register(self, set_process_callback: int, client: int) -> int:
        """``jack_set_process_callback(client, ap_process, core)``; its return code."""
        return int(self._lib.ap_register(self._ptr, set_process_callback, client))

    def process(self, frames: int) -> int:
        """Run one period now (tests, on fake libjack functions; JACK calls the C function)."""
        return int(self._lib.ap_process(frames, self._ptr))

    # ----- input consumer ------------------------------------------------------------------------
    def in_pop(self) -> tuple[int, bytes] | None:
        """The oldest input event as ``(frame, bytes)``; None when the ring is empty."""
        size = self._lib.ap_in_pop(self._ptr, ctypes.byref(self._frame), self._data)
        if size == 0:
            return None
        return self._frame.value, self._data.raw[:size]

    def in_watermark(self) -> int | None:
        """The frame before which every input event is in the ring (None before the first
        period)."""
        if self._lib.ap_in_watermark(self._ptr, ctypes.byref(self._watermark)):
            return int(self._watermark.value)
        return None

    def period_start(self) -> int | None:
        """The first frame of the newest period the callback ran (None before the first; any
        thread)."""
        frame = _c_u32()
        if self._lib.ap_period_start(self._ptr, ctypes.byref(frame)):
            return int(frame.value)
        return None

    @property
    def in_pending(self) -> int:
        return int(self._lib.ap_in_pending(self._ptr))

    # ----- output producer -----------------------------------------------------------------------
    def out_push(self, frame: int, data: bytes, timed: bool) -> int:
        """Hand one event to the callback: 1 done, 0 ring full, -1 empty or longer than
        :data:`OUT_WIDTH`."""
        return int(self._lib.ap_out_push(self._ptr, frame, data, len(data), int(timed)))

    @property
    def out_pending(self) -> int:
        """Events handed over and not yet written."""
        return int(self._lib.ap_out_pending(self._ptr))

    def stats(self) -> dict[str, int]:
        """A copy of the callback's counters (any thread)."""
        out = _Stats()
        self._lib.ap_get_stats(self._ptr, ctypes.byref(out))
        return {name: int(getattr(out, name)) for name in _STAT_NAMES}


def jack_client_api(jack_module: Any) -> tuple[JackApi, int]:
    """The core's libjack functions and ``jack_set_process_callback`` (its address), taken from
    the libjack JACK-Client loaded (``jack._lib``)."""
    ffi, lib = jack_module._ffi, jack_module._lib

    def address(name: str) -> int:
        return int(ffi.cast("uintptr_t", getattr(lib, name)))

    api = JackApi(
        port_get_buffer=address("jack_port_get_buffer"),
        midi_get_event_count=address("jack_midi_get_event_count"),
        midi_event_get=address("jack_midi_event_get"),
        midi_clear_buffer=address("jack_midi_clear_buffer"),
        midi_event_write=address("jack_midi_event_write"),
        last_frame_time=address("jack_last_frame_time"),
    )
    return api, address("jack_set_process_callback")


def pointer_of(jack_module: Any, obj: Any) -> int:
    """The C pointer inside a JACK-Client ``Client`` or ``Port`` (its ``_ptr``) as an int."""
    return int(jack_module._ffi.cast("uintptr_t", obj._ptr))
