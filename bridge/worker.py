"""One worker thread's lifecycle: a thread, its stop Event, ``start``, ``stop(timeout)``, ``join``.

Every long-lived role of the bridge (the engine's control thread, the generation worker, the
scheduler, the OSC server, the polled MIDI input, the port supervisor) runs its loop in a
:class:`Worker`, so starting twice, stopping twice, stopping before starting and stopping from the
worker's own thread behave the same everywhere (in the manner of Magenta's ``MidiInteraction``).

The role keeps its loop and its state; the worker owns the thread.  The loop ends when
:attr:`Worker.stopping` is set: it checks ``stopping.is_set()`` or sleeps with
``stopping.wait(s)``.  A loop blocked elsewhere (a queue, a condition, a socket) is woken by the
``wake`` callable, which :meth:`Worker.stop` calls right after setting the event.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Worker"]


class Worker:
    """Runs ``run()`` on a thread named ``name`` (daemon unless told otherwise), once.

    Any thread may call :meth:`start`, :meth:`stop` and :meth:`join`; all are idempotent.  A
    worker is not restarted: after :meth:`stop`, :meth:`start` does nothing.
    """

    def __init__(
        self,
        name: str,
        run: Callable[[], None],
        *,
        wake: Callable[[], None] | None = None,
        daemon: bool = True,
    ) -> None:
        self.name = name
        self.daemon = daemon
        self.stopping = threading.Event()
        """Set by :meth:`stop`: the loop must return soon (check it, or sleep on it)."""
        self._run = run
        self._wake = wake
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def alive(self) -> bool:
        """The thread runs (started, not yet returned)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the thread (once; later calls, or calls after :meth:`stop`, do nothing)."""
        with self._lock:
            if self._thread is not None or self.stopping.is_set():
                return
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=self.daemon)
            self._thread.start()

    def stop(self, timeout: float | None = 2.0) -> bool:
        """Set :attr:`stopping`, wake the loop and join it (not when called from the worker's own
        thread).  True if the thread has ended (or never started) within ``timeout`` s."""
        self.stopping.set()
        if self._wake is not None:
            self._wake()
        return self.join(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; True if it has (or never started).  From the worker's own
        thread: returns False at once (a thread cannot join itself)."""
        thread = self._thread
        if thread is None:
            return True
        if thread is threading.current_thread():
            return False
        thread.join(timeout)
        return not thread.is_alive()

    def __repr__(self) -> str:
        state = (
            "alive"
            if self.alive
            else "ended"
            if self.started
            else ("stopped" if self.stopping.is_set() else "new")
        )
        return f"<Worker {self.name} {state}>"
