"""Faults: the JACK server dies and comes back, the DAW unplugs the ports, a model file is bad.

* :class:`~bridge.supervisor.PortSupervisor` on fake ports (no JACK): loss → nothing more is
  sent, the engine is told, the ports are closed; the server's return → the same ports reopen;
  drops are reported.
* A real ``antiphon bridge`` on its own JACK server (``antiphon-fault``, never the shared
  ``antiphon-test``): the server is SIGKILLed while an answer plays and restarted; the bridge
  reports it, reopens "Antiphon In"/"Antiphon Out" without a restart and answers again.  Killed
  and not restarted, the bridge still exits 0 on SIGINT.  jackd2 has 8 server-name slots, so the
  name is fixed and the server is always stopped.
* Ports disconnected and reconnected by the DAW (``jack_disconnect``/``jack_connect``): answers
  keep flowing.  A hot swap to a corrupt model over OSC keeps the old one.  A missing, corrupt
  or foreign model at start-up: one line, exit 1, no traceback.

Figures (faults injected and survived) are printed; run with ``-s``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from queue import Queue
from typing import Any

import mido
import pytest

from bridge.errors import PortError
from bridge.ports import BACKENDS, OpenedPort
from bridge.supervisor import PortSpec, PortSupervisor, SwitchingSink

# ---- the supervisor on fake ports ----------------------------------------------------------------


class FakeRt:
    """Stands in for an rtmidi MidiIn/MidiOut (JACK: polled with ``get_message``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[list[int]] = []
        self.callback: Callable[..., None] | None = None
        self.is_deleted = False
        self.queued: deque[tuple[list[int], float]] = deque()

    def send_message(self, message: Sequence[int]) -> None:
        assert not self.is_deleted, "sent to a closed port"
        self.sent.append(list(message))

    def set_callback(self, func: Callable[..., None]) -> None:
        self.callback = func

    def cancel_callback(self) -> None:
        self.callback = None

    def get_message(self) -> tuple[list[int], float] | None:
        return self.queued.popleft() if self.queued else None

    def deliver(self, data: list[int]) -> None:
        if self.callback is not None:
            self.callback((data, 0.0), None)
        else:
            self.queued.append((data, 0.0))

    def close_port(self) -> None:
        pass

    def delete(self) -> None:
        self.is_deleted = True


class FakeServer:
    """The probe and the port factories of one fake JACK server."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.identity: object | None = 1
        self.refuse = 0  # how many opens fail with PortError
        self.opened: list[FakeRt] = []
        monkeypatch.setattr("bridge.supervisor.open_output", self._opener("out"))
        monkeypatch.setattr("bridge.supervisor.open_input", self._opener("in"))

    def _opener(self, kind: str) -> Callable[..., OpenedPort]:
        def open_port(backend: Any, *, name: str, client_name: str, existing: str | None
                      ) -> OpenedPort:
            if self.identity is None or self.refuse:
                self.refuse = max(0, self.refuse - 1)
                raise PortError(f"cannot open MIDI {kind}put (fake)")
            rt = FakeRt(name)
            self.opened.append(rt)
            return OpenedPort(rt, name, True, backend)

        return open_port

    def probe(self) -> object | None:
        return self.identity


def _supervisor(server: FakeServer, lost: list[int]) -> tuple[PortSupervisor, Queue[Any]]:
    inbox: Queue[Any] = Queue(maxsize=4)
    sup = PortSupervisor(BACKENDS["jack"], PortSpec(), server_probe=server.probe, poll_s=3600,
                         report_every_s=0.0)
    sup.open()
    sup.start(inbox, on_lost=lambda: lost.append(1))
    return sup, inbox


def test_server_loss_stops_sending_and_the_return_reopens_the_ports(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, until: Any,
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.supervisor")
    server, lost = FakeServer(monkeypatch), list[int]()
    sup, inbox = _supervisor(server, lost)
    try:
        out_rt, in_rt = server.opened
        note = mido.Message("note_on", note=60, velocity=90)
        sup.sink.send(note)
        in_rt.deliver([0x90, 61, 80])
        assert until(lambda: inbox.qsize() == 1)
        assert out_rt.sent == [[0x90, 60, 90]]
        sup.poll()
        assert lost == [] and sup.up  # same server: nothing happens

        server.identity = None  # SIGKILL
        sup.poll()
        assert lost == [1] and not sup.up
        assert out_rt.is_deleted and in_rt.is_deleted
        sup.sink.send(note)  # the scheduler's note-offs after the loss go nowhere, counted
        assert len(out_rt.sent) == 1 and sup.stats()["midi_out_dropped_offline"] == 1
        sup.poll()
        assert len(server.opened) == 2  # nothing to reopen on yet

        server.identity, server.refuse = 2, 1  # back, but the first try fails
        sup.poll()
        assert not sup.up
        sup.poll()
        assert sup.up and lost == [1]
        out2, in2 = server.opened[2:]
        sup.sink.send(note)
        in2.deliver([0x80, 61, 0])
        assert until(lambda: inbox.qsize() == 2)
        assert out2.sent == [[0x90, 60, 90]]
        stats = sup.stats()
        assert (stats["port_losses"], stats["port_reopens"], stats["midi_ports"]) == (1, 1, "up")
        assert (stats["midi_out_sent"], stats["midi_in_received"]) == (2, 2)

        server.identity = 3  # restarted between two polls: a new server, so a loss too
        sup.poll()
        assert lost == [1, 1] and sup.up and sup.reopens == 2
    finally:
        sup.close()
    text = caplog.text
    assert text.count("went away") == 1 and text.count("was replaced") == 1
    assert text.count("is back:") == 2 and text.count("cannot be reopened yet") == 1
    assert all(rt.is_deleted for rt in server.opened)


def test_drops_and_malformed_input_are_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, until: Any,
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.supervisor")
    server, lost = FakeServer(monkeypatch), list[int]()
    sup, _inbox = _supervisor(server, lost)
    try:
        in_rt = server.opened[1]
        for i in range(10):
            in_rt.deliver([0x90, 60 + i, 90])
        in_rt.deliver([0x42])
        kinds = ("received", "dropped", "malformed")
        assert until(lambda: sum(sup.counts()[k] for k in kinds) == 11)
        sup.poll()
        sup.poll()  # nothing new: no second line
        stats = sup.stats()
        assert (stats["midi_in_received"], stats["midi_in_dropped"],
                stats["midi_in_malformed"]) == (4, 6, 1)
    finally:
        sup.close()
    lines = [r.getMessage() for r in caplog.records if "MIDI in" in r.getMessage()]
    assert lines == ["MIDI in: 6 more message(s) dropped (input queue full), 1 more malformed; "
                     "6 dropped, 1 malformed in all"]


def test_switching_sink_never_raises() -> None:
    sink = SwitchingSink()
    sink.send(mido.Message("note_off", note=1))
    assert sink.dropped_offline == 1
