#!/usr/bin/env bash
# Debian / Raspberry Pi OS packages the test suite uses (installed only when missing):
#   espeak-ng (speech), alsa-utils (aplay), sox, systemd (systemd-analyze verify),
#   shellcheck (install script lint), chromium (live view screenshot), mosquitto (MQTT tests' broker),
#   python3-venv.
set -euo pipefail

pkgs=(espeak-ng alsa-utils sox systemd shellcheck chromium mosquitto python3-venv)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "system packages present: ${pkgs[*]}"
    exit 0
fi
echo "installing system packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then SUDO="sudo"; else
        echo "need root to install ${missing[*]} (run as root or install sudo)" >&2; exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
