#!/usr/bin/env bash
# Antiphon's demo, the README's first command: `bash examples/demo.sh [examples/demo.py flags…]`.
#
# Installs what the demo needs, then runs examples/demo.py: a real `antiphon bridge` on a private
# dummy JACK server answers an example phrase; the answer is written to demo-out/ (answer.mid,
# pianoroll.png, answer.wav).
#   - Debian/Ubuntu packages, only if missing and root or sudo is available: jackd2 (the JACK
#     server and libjack), fluidsynth + fluid-soundfont-gm (the WAV; skipped without them),
#     python3-venv;
#   - .venv (created with python3 if absent) with `pip install -e '.[demo]'`, skipped when the
#     project and the demo's packages (JACK-Client, matplotlib) already import.
# Environment: PYTHON (interpreter for a new .venv, default python3), ANTIPHON_SKIP_APT=1.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'demo.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

PYTHON=${PYTHON:-python3}

missing=()
command -v jackd >/dev/null || missing+=(jackd2)
command -v fluidsynth >/dev/null || missing+=(fluidsynth)
compgen -G '/usr/share/sounds/sf2/*.sf2' >/dev/null || compgen -G '/usr/share/soundfonts/*.sf2' \
    >/dev/null || missing+=(fluid-soundfont-gm)
if [[ ! -x .venv/bin/python ]]; then
    command -v "$PYTHON" >/dev/null || missing+=(python3)
    "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
fi
if ((${#missing[@]})); then
    sudo_cmd=()
    ((EUID == 0)) || sudo_cmd=(sudo -n)
    if [[ ${ANTIPHON_SKIP_APT:-0} != 1 ]] && command -v apt-get >/dev/null \
        && { ((EUID == 0)) || sudo -n true 2>/dev/null; }; then
        say "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        "${sudo_cmd[@]}" apt-get update -q
        "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
    else
        say "missing: ${missing[*]} (install them with your package manager)"
        command -v jackd >/dev/null || die "the demo needs jackd (Debian/Ubuntu: jackd2)"
    fi
fi

if [[ ! -x .venv/bin/python ]]; then
    say "creating .venv with $("$PYTHON" -V 2>&1)"
    "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c 'import bridge.cli, bridge.generate, jack, matplotlib' 2>/dev/null; then
    say "installing antiphon[demo] into .venv (a minute or two the first time)"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[demo]'
fi

exec .venv/bin/python examples/demo.py "$@"
