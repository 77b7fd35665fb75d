"""OSC: control in (:class:`OscControl`) and answer events out (:class:`OscEvents`).

Control in is one UDP socket and one thread, bound to 127.0.0.1 unless told otherwise.  python-osc
parses the datagrams and builds the replies; the loop and the dispatch are ours, so that every
bad datagram is counted, logged and answered with ``/antiphon/error <address> <reason>`` to its
sender (python-osc's own servers drop malformed packets silently and sleep on bundle time tags).

Addresses (numbers may be int or float; whole-number settings accept a float like ``16.0``).  The
setting addresses are :data:`bridge.settings_spec.SPECS`' (``osc``): their argument types, ranges
and special values come from that table.

=============================  =============================================================
``/antiphon/length N [unit]``  answer length 1..512, unit ``events`` | ``beats`` | ``bars``
``/antiphon/temperature f``    sampling temperature 0.05..5
``/antiphon/top_k n``          keep the n likeliest tokens, 0..1000, 0 = off
``/antiphon/top_p f``          nucleus sampling 0.05..1
``/antiphon/tempo bpm``        tempo when no MIDI clock runs, 20..300 BPM
``/antiphon/silence beats``    silence that ends a phrase, 0.25..16 beats
``/antiphon/start s``          ``auto`` | ``now`` | ``beat`` | ``bar``
``/antiphon/mode s``           ``call`` | ``trigger`` | ``listen``
``/antiphon/channel n``        output channel 1..16
``/antiphon/in_channel n``     input channel 1..16, 0 = all
``/antiphon/seed n``           reproducible answers, ≥ 0; -1 = random
``/antiphon/passthrough b``    1 = echo the input to the output
``/antiphon/key s``            ``auto`` (heard from each call) or a key: ``C``, ``F#m``, ``Bb``…
``/antiphon/key_lock f``       0..1: 0 = free, 1 = scale tones only (in between: out-of-key rarer)
``/antiphon/trigger``          answer now (``/antiphon/stop``, ``/antiphon/panic`` likewise)
``/antiphon/model name``       hot-swap to a model in the model directories, or ``auto`` (chosen
                              per answer from the call: a single line gets the melody model,
                              chords the chordal model under which the call is likeliest)
``/antiphon/status``           replies ``/antiphon/status key value …`` (also ``heard_key``)
=============================  =============================================================

``/antiphon/trigger``, ``/stop`` and ``/panic`` take no argument, or one number: 0 is ignored, so
a controller button that sends 1 on press and 0 on release acts once.

Events out (``--osc-out HOST:PORT``): ``/antiphon/answer/plan id onset pitch velocity duration …``
(beats from the answer's start, four values per note), ``/antiphon/answer/begin id``,
``/antiphon/note pitch velocity duration_beats`` as each note starts, ``/antiphon/answer/end id``.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import build_msg
from pythonosc.osc_packet import OscPacket

from bridge.errors import AntiphonError, ConfigError, PortError
from bridge.protocols import AnswerEvents, Controller, NullEvents
from bridge.settings_spec import SPECS, SettingSpec, spec
from bridge.worker import Worker

__all__ = [
    "ERROR_ADDRESS",
    "AnswerEvents",
    "Controller",
    "NullEvents",
    "OscControl",
    "OscEvents",
    "parse_host_port",
]

log = logging.getLogger(__name__)

PREFIX = "/antiphon"
ERROR_ADDRESS = f"{PREFIX}/error"
STATUS_ADDRESS = f"{PREFIX}/status"


class _Bad(Exception):
    """A message we refuse; the text is the reason sent back in ``/antiphon/error``."""


# ---- argument checks ---------------------------------------------------------------------------


def _count(args: list[Any], low: int, high: int | None = None) -> None:
    high = low if high is None else high
    if not low <= len(args) <= high:
        want = str(low) if low == high else f"{low}..{high}"
        raise _Bad(f"expects {want} argument{'' if want == '1' else 's'}, got {len(args)}")


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(f"expects a number, got {_describe(value)}")
    if not math.isfinite(value):
        raise _Bad(f"expects a finite number, got {value}")
    return float(value)


def _whole(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    number = _number(value)
    if not number.is_integer():
        raise _Bad(f"expects a whole number, got {number:g}")
    return int(number)


def _flag(value: Any) -> bool | int:
    return value if isinstance(value, bool) else _whole(value)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad(f"expects a string, got {_describe(value)}")
    return value


def _argument(setting: SettingSpec, value: Any) -> Any:
    """An OSC argument as the value of ``setting`` (Settings checks its range)."""
    if setting.kind == "float":
        return _number(value)
    if setting.kind == "bool":
        return _flag(value)
    if setting.kind != "int":
        return _text(value)
    number = _whole(value)
    return None if number == setting.none_number else number


def _describe(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return f"a blob of {len(value)} bytes"
    if value is None:
        return "nil"
    return f"{type(value).__name__} {value!r}"


def _osc_value(value: object) -> int | float | str:
    """A status value as an OSC argument every client understands (no nil, no booleans)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float, str)):
        return value
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "none"
    return str(value)


# ---- control in --------------------------------------------------------------------------------


Reply = tuple[str, list[Any]]
Handler = Callable[[list[Any]], Reply | None]


class OscControl:
    """The OSC control server: one thread reading one UDP socket.

    The socket is bound in ``__init__`` (PortError if the address is taken), so ``address`` is
    known before :meth:`start`.  :meth:`stop` sets the stop Event and joins the thread.  Counters:
    ``received`` (messages handled), ``errors`` (messages answered with ``/antiphon/error``),
    ``malformed`` (datagrams that are not OSC at all; also answered).
    """

    def __init__(
        self,
        host: str,
        port: int,
        controller: Controller,
        *,
        poll_interval: float = 0.1,
    ) -> None:
        self._controller = controller
        self.worker = Worker("antiphon-osc", self._run)
        self.received = 0
        self.errors = 0
        self.malformed = 0
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0][0]
            self._sock = socket.socket(family, socket.SOCK_DGRAM)
        except (OSError, UnicodeError) as err:
            raise PortError(
                f"cannot listen for OSC on {host}:{port} ({err}); check --osc-host"
            ) from None
        try:
            self._sock.bind((host, port))
        except OSError as err:
            self._sock.close()
            raise PortError(
                f"cannot listen for OSC on {host}:{port} ({err.strerror or err}); "
                "choose another --osc-port"
            ) from None
        self._sock.settimeout(poll_interval)
        self._handlers: dict[str, Handler] = {
            f"{PREFIX}/{s.osc}": self._setter(s) for s in SPECS if s.osc is not None
        }
        self._handlers |= {
            f"{PREFIX}/trigger": self._action(controller.trigger),
            f"{PREFIX}/stop": self._action(controller.stop_answer),
            f"{PREFIX}/panic": self._action(controller.panic),
            f"{PREFIX}/model": self._model,
            STATUS_ADDRESS: self._status,
        }

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually bound (port 0 asks the system for a free one)."""
        host, port = self._sock.getsockname()[:2]
        return host, port

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every OSC address this server answers."""
        return tuple(self._handlers)

    def start(self) -> None:
        """Start the server thread (main thread; idempotent)."""
        self.worker.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread, join it and close the socket (main thread). Idempotent."""
        self.worker.stop(timeout)  # the loop sees the event within one socket timeout
        self._sock.close()

    def stats(self) -> dict[str, int]:
        return {"received": self.received, "errors": self.errors, "malformed": self.malformed}

    # ---- server thread ----

    def _run(self) -> None:
        while not self.worker.stopping.is_set():
            try:
                data, sender = self._sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError as err:
                if self.worker.stopping.is_set():
                    break
                # e.g. ECONNREFUSED from an earlier reply to a closed port: not fatal
                log.debug("OSC receive: %s", err)
                continue
            self.handle_datagram(data, sender)

    def handle_datagram(self, data: bytes, sender: Any) -> None:
        """Parse one datagram and handle every message in it (server thread). Never raises."""
        try:
            packet = OscPacket(data)
        except Exception as err:  # ParseError, and python-osc raises others on some junk
            self.malformed += 1
            self._refuse(
                "?", f"not an OSC packet ({err})" if str(err) else "not an OSC packet", sender
            )
            return
        if not packet.messages:  # an empty bundle, or one whose contents python-osc skipped
            self.malformed += 1
            self._refuse("?", "no OSC message in the packet", sender)
        for timed in packet.messages:
            self._handle(timed.message, sender)

    def _handle(self, message: OscMessage, sender: Any) -> None:
        address = message.address
        self.received += 1
        handler = self._handlers.get(address)
        if handler is None:
            self._refuse(address, "unknown address", sender)
            return
        try:
            reply = handler(list(message.params))
        except (_Bad, AntiphonError) as err:
            self._refuse(address, str(err), sender)
            return
        except Exception as err:  # a bug or a failing controller: answer it, keep serving
            log.exception("OSC %s failed", address)
            self._refuse(address, f"internal error: {err}", sender)
            return
        if reply is not None:
            self._send(reply[0], reply[1], sender)

    def _refuse(self, address: str, reason: str, sender: Any) -> None:
        self.errors += 1
        if self.errors <= 50 or self.errors % 100 == 0:
            log.warning("OSC %s from %s: %s", address, _peer(sender), reason)
        self._send(ERROR_ADDRESS, [address, reason], sender)

    def _send(self, address: str, args: list[Any], target: Any) -> None:
        try:
            self._sock.sendto(build_msg(address, args).dgram, target)
        except Exception as err:  # peer gone, datagram too large, unencodable value
            log.warning("OSC reply %s to %s failed: %s", address, _peer(target), err)

    # ---- handlers (server thread) ----

    def _setter(self, setting: SettingSpec) -> Handler:
        """The handler of a setting's address: one argument (two with ``osc_also``: ``/length
        N unit``), converted as the setting's kind says; its ``none_number`` means None."""
        also = None if setting.osc_also is None else spec(setting.osc_also)

        def handle(args: list[Any]) -> None:
            _count(args, 1, 1 if also is None else 2)
            changes = {setting.name: _argument(setting, args[0])}
            if also is not None and len(args) == 2:
                changes[also.name] = _argument(also, args[1])
            self._controller.update_settings(**changes)

        return handle

    def _action(self, action: Callable[[], None]) -> Handler:
        def handle(args: list[Any]) -> None:
            _count(args, 0, 1)
            if args and _number(args[0]) == 0:
                return  # a button's release
            action()

        return handle

    def _model(self, args: list[Any]) -> Reply:
        _count(args, 1)
        name = self._controller.swap_model(_text(args[0]))
        return f"{PREFIX}/model", [name]

    def _status(self, args: list[Any]) -> Reply:
        _count(args, 0)
        flat: list[Any] = []
        for key, value in self._controller.status().items():
            flat += [str(key), _osc_value(value)]
        flat += ["osc_errors", self.errors]
        return STATUS_ADDRESS, flat


def _peer(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


# ---- events out --------------------------------------------------------------------------------


def parse_host_port(text: str, *, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``"HOST:PORT"``, ``"[::1]:PORT"``, ``":PORT"`` or ``"PORT"`` → (host, port); ConfigError."""
    raw = text.strip()
    host, sep, port_text = raw.rpartition(":")
    if not sep:
        host, port_text = "", raw
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"write an IPv6 address in brackets, e.g. [::1]:9001; got {text!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"expected HOST:PORT (e.g. 127.0.0.1:9001), got {text!r}") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"port must be 1..65535, got {port} in {text!r}")
    return host or default_host, port


def _plan_values(note: object) -> list[float | int]:
    """``(onset_beats, pitch, velocity, duration_beats)`` of one planned note."""
    if isinstance(note, (tuple, list)) and len(note) == 4:
        onset, pitch, velocity, duration = note
    else:
        onset = next(
            getattr(note, a)
            for a in ("onset_beats", "start_beats", "beat", "onset")
            if hasattr(note, a)
        )
        pitch = note.pitch  # type: ignore[attr-defined]
        velocity = note.velocity  # type: ignore[attr-defined]
        duration = next(
            getattr(note, a) for a in ("duration_beats", "duration") if hasattr(note, a)
        )
    return [float(onset), int(pitch), int(velocity), float(duration)]


class OscEvents:
    """Sends the answer as OSC to ``host:port`` (scheduler and generation threads). Never raises.

    The target is resolved once in ``__init__`` (ConfigError if it cannot be).  Failed sends are
    counted in ``failed`` and logged (first, then every 100th).
    """

    def __init__(self, host: str, port: int) -> None:
        try:
            info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        except (OSError, UnicodeError) as err:
            raise ConfigError(f"cannot resolve OSC target {host}:{port} ({err})") from None
        self.target = info[4]
        self._sock = socket.socket(info[0], socket.SOCK_DGRAM)
        self._lock = threading.Lock()
        self.sent = 0
        self.failed = 0

    def _send(self, address: str, args: list[Any]) -> None:
        with self._lock:
            try:
                self._sock.sendto(build_msg(address, args).dgram, self.target)
            except Exception as err:  # refused, unreachable, closed, unencodable
                self.failed += 1
                if self.failed == 1 or self.failed % 100 == 0:
                    log.warning("OSC out %s failed: %s (%d failures)", address, err, self.failed)
                return
            self.sent += 1

    def note(self, pitch: int, velocity: int, duration_beats: float) -> None:
        self._send(f"{PREFIX}/note", [int(pitch), int(velocity), float(duration_beats)])

    def answer_begin(self, answer_id: int) -> None:
        self._send(f"{PREFIX}/answer/begin", [int(answer_id)])

    def answer_end(self, answer_id: int) -> None:
        self._send(f"{PREFIX}/answer/end", [int(answer_id)])

    def answer_plan(self, answer_id: int, notes: Iterable[object]) -> None:
        try:
            values: list[Any] = [int(answer_id)]
            for note in notes:
                values += _plan_values(note)
        except Exception as err:  # a note shape we do not know: report, never raise
            with self._lock:
                self.failed += 1
            log.warning("OSC out answer/plan: cannot encode notes (%s)", err)
            return
        self._send(f"{PREFIX}/answer/plan", values)

    def stats(self) -> dict[str, int]:
        return {"sent": self.sent, "failed": self.failed}

    def close(self) -> None:
        with self._lock:
            self._sock.close()
