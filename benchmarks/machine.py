"""What the numbers were measured on: CPU, cores, load, library versions, date."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
from pathlib import Path

__all__ = ["describe_machine", "load_average", "rss_kib"]

_PACKAGES = (
    "numpy",
    "onnxruntime",
    "tensorflow",
    "keras",
    "tf2onnx",
    "music21",
    "mido",
    "python-rtmidi",
    "python-osc",
    "JACK-Client",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _jackd_version() -> str:
    for path in ("/usr/share/doc/jackd2/changelog.Debian.gz",):
        if Path(path).exists():
            import gzip

            with gzip.open(path, "rt") as handle:
                first = handle.readline()
            if "(" in first:
                return first.split("(", 1)[1].split(")", 1)[0]
    return "unknown"


def load_average() -> tuple[float, float, float]:
    """1, 5 and 15 minute load averages (zeros where the OS has none)."""
    try:
        return os.getloadavg()
    except OSError:
        return (0.0, 0.0, 0.0)


def rss_kib(pid: int, field: str = "VmRSS") -> int | None:
    """Resident memory of a process from ``/proc/PID/status`` (``VmRSS`` or peak ``VmHWM``), KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def describe_machine() -> dict[str, str]:
    """An ordered description of this machine and the software versions, all strings."""
    info: dict[str, str] = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count() or 0),
    }
    memory = _memory_gib()
    if memory is not None:
        info["memory"] = f"{memory:.1f} GiB"
    info["OS"] = f"{platform.system()} {platform.release()}"
    info["load average at start (1/5/15 min)"] = " / ".join(f"{x:.2f}" for x in load_average())
    info["Python"] = platform.python_version()
    for package in _PACKAGES:
        try:
            info[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info[package] = "not installed"
    info["jackd"] = _jackd_version()
    return info
