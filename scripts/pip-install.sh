#!/usr/bin/env bash
# pip install into a --system-site-packages venv without shadowing apt's numpy on a Pi.
#
#   scripts/pip-install.sh VENV_PYTHON SYSTEM_PYTHON PIP_INSTALL_ARGS...
#   e.g. scripts/pip-install.sh .venv/bin/python python3 -e .      (what `make run` does)
#   scripts/pip-install.sh --check SYSTEM_PYTHON                     (only the platform check below)
#
# Platforms with no TFLite runtime are refused first, in one line, exit 69: 32-bit ARM
# (armv7l) with Python 3.12 or newer (tflite-runtime stops at 3.11, ai-edge-litert has no
# 32-bit wheels) and ARMv6 (Pi 1 / Zero: no wheels at all). systemd/install.sh runs --check.
#
# Raspberry Pi OS's python3-picamera2 (and its python3-simplejpeg) are built against apt's
# numpy (1.24 on Bookworm). A pip numpy 2 in the venv would shadow it and 'import picamera2'
# fails ("numpy.dtype size changed"). So when the system Python has numpy and this is a Pi
# (arm) or picamera2 is installed, pip gets the constraint numpy==<apt's version>, and picks
# versions of the rest (e.g. opencv-python-headless 4.11) that work with it. On an x86
# development machine pip chooses numpy freely. DJSMILE_PIN_NUMPY=1 / 0 forces it on / off.
# systemd/install.sh applies the same constraint.
set -euo pipefail

check_only=0
if [[ ${1:-} == --check && $# == 2 ]]; then
    check_only=1
    venv_py=""
    sys_py=$2
elif (($# >= 3)); then
    venv_py=$1
    sys_py=$2
    shift 2
else
    echo "usage: $0 VENV_PYTHON SYSTEM_PYTHON PIP_INSTALL_ARGS... | $0 --check SYSTEM_PYTHON" >&2
    exit 64
fi

# "<machine> <numpy version or -> <picamera2 installed: yes/no> <major.minor>" from the system Python.
read -r machine numpy_v picam py_v < <("$sys_py" -c '
import importlib.util, platform, sys
try:
    import numpy
    v = numpy.__version__
except Exception:
    v = "-"
print(platform.machine(), v, "yes" if importlib.util.find_spec("picamera2") else "no",
      "%d.%d" % sys.version_info[:2])
' 2>/dev/null || echo "? - no ?")

refuse() {
    echo "djsmile: $*" >&2
    exit 69
}
case $machine in
    armv6l) refuse "no TFLite runtime for ARMv6 (Pi 1 / Pi Zero): djsmile needs a Pi Zero 2 W, 3, 4 or 5" ;;
    armv7l)
        if [[ $py_v != "?" ]] && ((${py_v#*.} >= 12)); then
            refuse "no TFLite runtime for 32-bit ARM with Python $py_v (tflite-runtime stops at 3.11, ai-edge-litert has no 32-bit wheels): use 64-bit Raspberry Pi OS, or 32-bit Bookworm (Python 3.11)"
        fi ;;
esac
((!check_only)) || exit 0

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
    if [[ $numpy_v == 1.* ]]; then
        # The newest releases that accept numpy 1.x (opencv-python-headless 4.12 and ml-dtypes 0.6
        # require numpy >= 2): saves pip from downloading each newer wheel to find that out.
        printf 'opencv-python-headless<4.12\nml-dtypes<0.6\n' >>"$constraints"
    fi
    echo "pip-install: keeping the system numpy $numpy_v in the venv (apt's python3-picamera2 is built against it)"
    args+=(--constraint "$constraints")
fi
# setuptools' "Editable installation" banner (a BuildBackendWarning about folders named like the
# package) shows through pip's --quiet; it is not about this project's layout (edge/ -> djsmile).
export PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}ignore:Editable installation"
"$venv_py" -m pip install --disable-pip-version-check --no-input "${args[@]}" "$@"
