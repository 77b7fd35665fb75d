"""Builds the native JACK backend's C process callback (bridge/_jack_process.c).

Everything else is in pyproject.toml.  The extension is optional: without a C compiler the
install still succeeds, the native backend says it is unavailable, and ``--backend auto`` uses
RtMidi on JACK instead (bridge/jack_native_process.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "bridge._jack_process",
            sources=["bridge/_jack_process.c"],
            extra_compile_args=["-std=c11", "-O2", "-Wall", "-Wextra"],
            optional=True,
        )
    ]
)
