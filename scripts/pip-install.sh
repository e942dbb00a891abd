#!/usr/bin/env bash
# pip install into a --system-site-packages venv without shadowing apt's numpy on a Pi.
#
#   scripts/pip-install.sh VENV_PYTHON SYSTEM_PYTHON PIP_INSTALL_ARGS...
#   e.g. scripts/pip-install.sh .venv/bin/python python3 -e .      (what `make run` does)
#
# Raspberry Pi OS's python3-picamera2 (and its python3-simplejpeg) are built against apt's
# numpy (1.24 on Bookworm). A pip numpy 2 in the venv would shadow it and 'import picamera2'
# fails ("numpy.dtype size changed"). So when the system Python has numpy and this is a Pi
# (arm) or picamera2 is installed, pip gets the constraint numpy==<apt's version>, and picks
# versions of the rest (e.g. opencv-python-headless 4.11) that work with it. On an x86
# development machine pip chooses numpy freely. DJSMILE_PIN_NUMPY=1 / 0 forces it on / off.
# systemd/install.sh applies the same constraint.
set -euo pipefail

if (($# < 3)); then
    echo "usage: $0 VENV_PYTHON SYSTEM_PYTHON PIP_INSTALL_ARGS..." >&2
    exit 64
fi
venv_py=$1
sys_py=$2
shift 2

# "<machine> <numpy version or -> <picamera2 installed: yes/no>" from the system Python.
read -r machine numpy_v picam < <("$sys_py" -c '
import importlib.util, platform
try:
    import numpy
    v = numpy.__version__
except Exception:
    v = "-"
print(platform.machine(), v, "yes" if importlib.util.find_spec("picamera2") else "no")
' 2>/dev/null || echo "? - no")

pin=${DJSMILE_PIN_NUMPY:-auto}
if [[ $pin == auto ]]; then
    pin=0
    if [[ $numpy_v != - ]]; then
        case $machine in
            aarch64 | armv7l | armv6l | arm64) pin=1 ;;
        esac
        [[ $picam == yes ]] && pin=1
    fi
fi

args=()
constraints=""
cleanup() { [[ -z $constraints ]] || rm -f -- "$constraints"; }
trap cleanup EXIT
if [[ $pin == 1 ]]; then
    if [[ $numpy_v == - ]]; then
        echo "pip-install: DJSMILE_PIN_NUMPY=1 but $sys_py has no numpy (sudo apt-get install python3-numpy)" >&2
        exit 69
    fi
    constraints=$(mktemp "${TMPDIR:-/tmp}/djsmile-constraints.XXXXXX")
    printf 'numpy==%s\n' "$numpy_v" >"$constraints"
    echo "pip-install: keeping the system numpy $numpy_v in the venv (apt's python3-picamera2 is built against it)"
    args+=(--constraint "$constraints")
fi
"$venv_py" -m pip install --disable-pip-version-check --no-input "${args[@]}" "$@"
