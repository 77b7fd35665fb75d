"""bridge.worker.Worker: one thread, one stop Event, idempotent start/stop/join."""

from __future__ import annotations

import threading

from bridge.worker import Worker


def test_start_runs_once_and_stop_joins() -> None:
    runs: list[str] = []

    def loop() -> None:
        runs.append(threading.current_thread().name)
        worker.stopping.wait()

    worker = Worker("test-worker", loop)
    assert not worker.started and not worker.alive and worker.join(0) is True
    worker.start()
    worker.start()  # idempotent
    assert worker.alive and worker.started
    assert worker.stop(5.0) is True
    assert worker.stop(5.0) is True  # idempotent
    assert not worker.alive and runs == ["test-worker"]
    worker.start()  # not restarted after stop
    assert not worker.alive and runs == ["test-worker"]
    assert "ended" in repr(worker)


def test_stop_wakes_a_loop_blocked_elsewhere() -> None:
    cond = threading.Condition()
    woken: list[bool] = []

    def loop() -> None:
        with cond:
            while not worker.stopping.is_set():
                cond.wait()  # no timeout: only the wake callable ends this
        woken.append(True)

    def wake() -> None:
        with cond:
            cond.notify_all()

    worker = Worker("test-blocked", loop, wake=wake)
    worker.start()
    assert worker.stop(5.0) is True and woken == [True]


def test_stop_before_start_and_from_the_worker_itself() -> None:
    never = Worker("test-never", lambda: None)
    assert never.stop() is True and not never.started
    never.start()
    assert not never.started and "stopped" in repr(never)

    results: list[bool] = []

    def loop() -> None:
        results.append(worker.stop())  # a thread cannot join itself: returns at once

    worker = Worker("test-self-stop", loop)
    worker.start()
    assert worker.join(5.0) is True
    assert results == [False] and worker.stopping.is_set()


def test_daemon_flag_and_a_timeout_that_runs_out() -> None:
    release = threading.Event()
    worker = Worker("test-slow", lambda: release.wait(10.0), daemon=False)
    worker.start()
    try:
        assert worker._thread is not None and worker._thread.daemon is False
        assert worker.stop(0.01) is False and worker.alive  # ignores its stop Event
    finally:
        release.set()
    assert worker.join(5.0) is True


def test_the_roles_run_on_named_workers_that_stop_twice_quietly() -> None:
    """The OSC server, the polled MIDI input and the generation worker use the one lifecycle."""
    from queue import Queue

    from bridge.clock import TempoTracker
    from bridge.generate import AnswerGenerator
    from bridge.midi_poll import PolledMidiInput
    from bridge.osc import OscControl
    from bridge.protocols import NullEvents
    from bridge.schedule import Scheduler

    class NoPort:
        def get_message(self) -> None:
            return None

    class NoSink:
        def send(self, msg: object) -> None: ...

    class NoController:
        def __getattr__(self, name: str) -> object:
            return lambda *args, **kwargs: None

    osc = OscControl("127.0.0.1", 0, NoController())  # type: ignore[arg-type]
    poller = PolledMidiInput(NoPort(), Queue(), poll_s=0.001)  # starts at once
    tempo = TempoTracker(120.0)
    generator = AnswerGenerator(Scheduler(NoSink(), tempo, NullEvents()), tempo)
    osc.start()
    osc.start()  # idempotent
    generator.start()
    workers = {osc.worker.name, poller.worker.name, generator.worker.name}
    assert workers == {"antiphon-osc", "antiphon-midi-in", "antiphon-generate"}
    assert all(w.alive for w in (osc.worker, poller.worker, generator.worker))
    for _ in range(2):
        osc.stop(5.0)
        poller.close(5.0)
        generator.stop(5.0)
    assert not any(w.alive for w in (osc.worker, poller.worker, generator.worker))
