#!/usr/bin/env bash
# Install djsmile as a systemd service on Raspberry Pi OS Bookworm (Python 3.11) or Trixie (Python 3.13).
#
#   sudo systemd/install.sh              install or upgrade, enable and (re)start the service
#   sudo systemd/install.sh --uninstall  stop and remove the service and its venv; keep photos and config
#   sudo systemd/install.sh --uninstall --purge   ...and delete photos, events, config, unit drop-ins and the djsmile user
#   systemd/install.sh --dry-run [...]   print every action ("would: ...") without doing any (no root needed)
#
# What it does (each step is skipped when already done, so a second run is safe):
#   apt packages     python3-picamera2 python3-lgpio espeak-ng alsa-utils python3-venv python3-pip
#   system user      djsmile (no login, home /var/lib/djsmile) in the groups video gpio audio
#   venv             /opt/djsmile/venv with --system-site-packages (picamera2 and lgpio come from apt),
#                    then pip install "<this repo>[pi]", keeping apt's numpy (scripts/pip-install.sh)
#   config           /etc/djsmile/config.toml from 'djsmile config --default', only if absent: never overwritten
#   unit             /etc/systemd/system/djsmile.service, daemon-reload, enable, (re)start
set -euo pipefail
umask 022  # the venv and unit must be readable by the djsmile user whatever sudo's umask is

readonly PROG=djsmile-install
readonly SERVICE=djsmile.service
readonly SVC_USER=djsmile
readonly DEVICE_GROUPS=(video gpio audio)
readonly APT_PACKAGES=(python3-picamera2 python3-lgpio espeak-ng alsa-utils python3-venv python3-pip)
# Packages that only Raspberry Pi OS's apt sources carry: on another Debian they are skipped with a warning.
readonly PI_ONLY_PACKAGES=(python3-picamera2 python3-lgpio)
# The interpreter whose dist-packages hold apt's picamera2, lgpio and numpy. DJSMILE_TEST_PYTHON
# replaces it in a --dry-run only (scripts/check-pi-emulated.sh: an arm userland's Python under qemu).
readonly SYS_PYTHON=${DJSMILE_TEST_PYTHON:-/usr/bin/python3}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO

# DJSMILE_TEST_ROOT prefixes every path this script reads or writes; the test suite uses it to
# show --dry-run a fake system. It is refused without --dry-run.
ROOT=${DJSMILE_TEST_ROOT:-}
readonly ROOT
readonly VENV_PARENT=$ROOT/opt/djsmile
readonly VENV=$VENV_PARENT/venv
readonly CONFIG_DIR=$ROOT/etc/djsmile
readonly CONFIG=$CONFIG_DIR/config.toml
readonly STATE_DIR=$ROOT/var/lib/djsmile
readonly UNIT_SRC=$REPO/systemd/djsmile.service
readonly UNIT_DST=$ROOT/etc/systemd/system/$SERVICE
readonly SYSTEMD_RUNNING_DIR=$ROOT/run/systemd/system

DRY_RUN=0
UNINSTALL=0
PURGE=0
TMP_DIRS=()

usage() {
    cat <<EOF
usage: sudo $0 [--dry-run] [--uninstall [--purge]]

Install djsmile as a systemd service (Raspberry Pi OS Bookworm or Trixie).

  --dry-run    print every action ("would: ...") without doing it; needs no root
  --uninstall  stop and disable the service, remove the unit and $VENV;
               keep photos and events ($STATE_DIR) and config ($CONFIG_DIR)
  --purge      with --uninstall: also delete $STATE_DIR, $CONFIG_DIR and the $SVC_USER user
  -h, --help   this help
EOF
}

say() { printf '%s: %s\n' "$PROG" "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() {
    local code=$1
    shift
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit "$code"
}

# Quote a command for display: plain words stay as they are, the rest in single quotes.
show() {
    local out="" a
    for a in "$@"; do
        if [[ $a =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
            out+="$a "
        else
            out+="'${a//\'/\'\\\'\'}' "
        fi
    done
    printf '%s' "${out% }"
}

# Every change to the system goes through run: printed, and done unless --dry-run.
run() {
    if ((DRY_RUN)); then
        printf 'would: %s\n' "$(show "$@")"
        return 0
    fi
    printf '+ %s\n' "$(show "$@")"
    "$@"
}

# An action that is not a single command (printed as a sentence in --dry-run).
would() { printf 'would: %s\n' "$*"; }

cleanup() {
    local d
    for d in "${TMP_DIRS[@]}"; do
        rm -rf -- "$d"
    done
}
trap cleanup EXIT

systemd_running() { [[ -d $SYSTEMD_RUNNING_DIR ]]; }

pkg_installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}

pkg_available() {
    local candidate
    candidate=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
    [[ -n $candidate && $candidate != "(none)" ]]
}

is_pi_only() {
    local p
    for p in "${PI_ONLY_PACKAGES[@]}"; do
        [[ $p == "$1" ]] && return 0
    done
    return 1
}

# ---------------------------------------------------------------------------------------------
check_system() {
    local pretty="unknown system" py
    if [[ -r $ROOT/etc/os-release ]]; then
        # shellcheck disable=SC1091  # a system file, not part of this repo
        pretty=$(. "$ROOT/etc/os-release" && printf '%s' "${PRETTY_NAME:-${ID:-}}")
    fi
    say "system: $pretty ($(uname -m))"
    command -v systemctl >/dev/null || die 69 "systemctl not found: djsmile runs as a systemd service"
    [[ -x $SYS_PYTHON ]] || die 69 "$SYS_PYTHON not found: install python3 (sudo apt-get install python3)"
    py=$("$SYS_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    if ! "$SYS_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))'; then
        die 69 "Python $py is too old: djsmile needs 3.9 or newer (Raspberry Pi OS Bookworm has 3.11)"
    fi
    say "python: $SYS_PYTHON $py"
    # One line and exit 69 on a platform with no TFLite runtime (32-bit ARM + Python 3.13, ARMv6).
    "$REPO/scripts/pip-install.sh" --check "$SYS_PYTHON" || exit $?
    [[ -f $REPO/setup.cfg && -f $UNIT_SRC ]] || die 66 "$REPO is not a djsmile source tree (no setup.cfg or systemd/djsmile.service)"
    if [[ ! -f $REPO/models/smile_int8.tflite ]]; then
        if ((DRY_RUN)); then
            warn "$REPO/models/smile_int8.tflite is missing: a real install would stop here"
        else
            die 66 "$REPO/models/smile_int8.tflite is missing: train and convert a model first (djsmile train, djsmile convert)"
        fi
    fi
}

# The one line a user reads when apt has no python3-lgpio (plain Debian, not Raspberry Pi OS): what
# drives the pins instead. The [pi] extra pip-installs lgpio only where PyPI has wheels (arm, Python < 3.13).
lgpio_fallback() {
    local machine py msg="python3-lgpio is not in your apt sources (not Raspberry Pi OS?)"
    read -r machine py < <("$SYS_PYTHON" -c 'import platform, sys; print(platform.machine(), "%d.%d" % sys.version_info[:2])')
    case $machine/$py in
        aarch64/3.9 | aarch64/3.1[0-2] | armv7l/*)
            msg+=": skipped; pip installs lgpio from PyPI instead (Python $py)" ;;
        aarch64/*)
            msg+=" and PyPI's lgpio has no wheel for Python $py: the LED, shutter and button use gpiozero's native"
            msg+=" pins (Pi 4 and older; on a Pi 5 they stay simulated); Raspberry Pi OS's archive has python3-lgpio" ;;
        *) msg+=": skipped; this $machine machine has no Pi GPIO, so the LED, shutter and button are simulated" ;;
    esac
    printf '%s\n' "$msg"
}

install_apt_packages() {
    local p missing=()
    for p in "${APT_PACKAGES[@]}"; do
        pkg_installed "$p" || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        say "apt packages already installed: ${APT_PACKAGES[*]}"
        return 0
    fi
    export DEBIAN_FRONTEND=noninteractive
    run apt-get update
    local wanted=()
    for p in "${missing[@]}"; do
        if is_pi_only "$p" && ! pkg_available "$p"; then
            case $p in
                python3-picamera2)
                    warn "$p is not in your apt sources (not Raspberry Pi OS?): skipped; use a USB webcam (camera.source = \"0\")" ;;
                python3-lgpio) warn "$(lgpio_fallback)" ;;
                *) warn "$p is not in your apt sources (not Raspberry Pi OS?): skipped" ;;
            esac
        else
            wanted+=("$p")
        fi
    done
    # --no-install-recommends: on Raspberry Pi OS Lite this keeps python3-picamera2's desktop (Qt/GL) extras out.
    ((${#wanted[@]} == 0)) || run apt-get install -y --no-install-recommends "${wanted[@]}"
}

ensure_user() {
    local g
    for g in "${DEVICE_GROUPS[@]}"; do
        # Raspberry Pi OS has all three; elsewhere 'gpio' may be missing, and the unit's
        # SupplementaryGroups= would then stop the service from starting.
        getent group "$g" >/dev/null || run groupadd --system "$g"
    done
    if id -u "$SVC_USER" >/dev/null 2>&1; then
        say "system user $SVC_USER exists"
    else
        run useradd --system --user-group --home-dir /var/lib/djsmile --no-create-home \
            --shell /usr/sbin/nologin --comment "djsmile smile detector" "$SVC_USER"
    fi
    local have missing=()
    have=" $(id -nG "$SVC_USER" 2>/dev/null || true) "
    for g in "${DEVICE_GROUPS[@]}"; do
        [[ $have == *" $g "* ]] || missing+=("$g")
    done
    if ((${#missing[@]})); then
        run usermod --append --groups "$(IFS=,; printf '%s' "${missing[*]}")" "$SVC_USER"
    else
        say "$SVC_USER is in the groups ${DEVICE_GROUPS[*]}"
    fi
}

ensure_venv() {
    local want have=""
    want=$("$SYS_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    if [[ -x $VENV/bin/python ]]; then
        have=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
    fi
    if [[ -n $have && $have == "$want" ]]; then
        say "venv $VENV exists (Python $have)"
        return 0
    fi
    if [[ -e $VENV ]]; then
        # e.g. after an upgrade from Bookworm to Trixie the old venv's Python is gone.
        warn "venv $VENV has Python ${have:-that does not run}, the system has $want: recreating it"
        run "$SYS_PYTHON" -m venv --clear --system-site-packages "$VENV"
    else
        run mkdir -p "$VENV_PARENT"
        run "$SYS_PYTHON" -m venv --system-site-packages "$VENV"
    fi
}

install_package() {
    local build
    if ((DRY_RUN)); then
        build=/tmp/djsmile-build.XXXXXX
        would "copy $REPO (without .git, .venv, .cache) to a temporary build folder, so the checkout gets no root-owned build files"
    else
        build=$(mktemp -d /tmp/djsmile-build.XXXXXX)
        TMP_DIRS+=("$build")
        tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./.cache --exclude=./build \
            --exclude='./*.egg-info' -cf - . | tar -C "$build" -xf -
    fi
    # The same install as `make run`: pip-install.sh keeps apt's numpy (numpy==<apt's> for pip), so
    # python3-picamera2, built against it, still imports ("numpy.dtype size changed" otherwise).
    run "$REPO/scripts/pip-install.sh" "$VENV/bin/python" "$SYS_PYTHON" "${build}[pi]"
    if ((!DRY_RUN)); then
        "$VENV/bin/djsmile" --version
    fi
}

install_config() {
    run install -d -m 0755 "$CONFIG_DIR"
    if [[ -e $CONFIG ]]; then
        say "keeping your $CONFIG (never overwritten)"
        if ((!DRY_RUN)) && ! "$VENV/bin/djsmile" config --check "$CONFIG"; then
            warn "$CONFIG has an error (above): the service will stop with exit code 78 until you fix it"
        fi
        return 0
    fi
    if ((DRY_RUN)); then
        would "write $CONFIG from '$VENV/bin/djsmile config --default' (owner root:$SVC_USER, mode 0640, atomically)"
        return 0
    fi
    # Atomic: write a temp file in the same folder, fsync, rename.
    local tmp
    tmp=$(mktemp "$CONFIG_DIR/.config.toml.XXXXXX")
    if ! "$VENV/bin/djsmile" config --default >"$tmp"; then
        rm -f -- "$tmp"
        die 70 "'djsmile config --default' failed"
    fi
    chown "root:$SVC_USER" "$tmp"
    chmod 0640 "$tmp"   # the web token may live here: not world-readable
    sync "$tmp"
    mv -f -- "$tmp" "$CONFIG"
    say "wrote $CONFIG (edit it, then: sudo systemctl restart djsmile)"
}

install_unit() {
    if [[ -f $UNIT_DST ]] && cmp -s "$UNIT_SRC" "$UNIT_DST"; then
        say "$UNIT_DST is up to date"
    else
        run install -D -m 0644 "$UNIT_SRC" "$UNIT_DST"
    fi
    if ! systemd_running; then
        warn "systemd is not running (chroot or image build?): enabling only; it starts at the next boot"
        run systemctl enable "$SERVICE"
        return 0
    fi
    run systemctl daemon-reload
    run systemctl enable "$SERVICE"
    # restart = start, or restart to pick up a new version on a second run. With Type=notify it
    # returns once djsmile has sent READY=1 (camera and model up), or fails.
    if ! run systemctl restart "$SERVICE"; then
        journalctl -u "$SERVICE" -n 20 --no-pager >&2 || true
        die 1 "djsmile was installed but did not start (above). Fix it, then: sudo systemctl restart djsmile"
    fi
}

do_install() {
    check_system
    install_apt_packages
    ensure_user
    ensure_venv
    install_package
    install_config
    install_unit
    if ((DRY_RUN)); then
        say "then: Logs: journalctl -u djsmile -f   Status: systemctl status djsmile"
        say "photos: $STATE_DIR/photos   events: $STATE_DIR/events.jsonl   settings: $CONFIG"
        say "dry run: nothing was changed"
    else
        say "done. Logs: journalctl -u djsmile -f   Status: systemctl status djsmile"
        say "photos: $STATE_DIR/photos   events: $STATE_DIR/events.jsonl   settings: $CONFIG"
    fi
}

do_uninstall() {
    if [[ -f $UNIT_DST ]]; then
        if systemd_running; then
            run systemctl disable --now "$SERVICE"
        else
            run systemctl disable "$SERVICE"
        fi
        run rm -f -- "$UNIT_DST"
        if systemd_running; then
            run systemctl daemon-reload
            run systemctl reset-failed "$SERVICE" || true
        fi
    else
        say "no unit at $UNIT_DST (already removed)"
    fi
    if [[ -e $VENV ]]; then
        run rm -rf -- "$VENV"
    else
        say "no venv at $VENV (already removed)"
    fi
    if [[ -d $VENV_PARENT ]]; then
        run rmdir --ignore-fail-on-non-empty -- "$VENV_PARENT"
    fi
    if ((PURGE)); then
        # also drop-ins made with 'systemctl edit djsmile'
        run rm -rf -- "$STATE_DIR" "$CONFIG_DIR" "$UNIT_DST.d"
        if id -u "$SVC_USER" >/dev/null 2>&1; then
            run userdel "$SVC_USER"
        fi
        if ((DRY_RUN)); then say "would purge photos, events and config"; else say "purged photos, events and config"; fi
    else
        say "kept photos and events in $STATE_DIR and config in $CONFIG_DIR (delete them with --uninstall --purge)"
    fi
    say "apt packages (${APT_PACKAGES[*]}) are left installed"
    if ((DRY_RUN)); then say "dry run: nothing was changed"; fi
}

main() {
    ORIG_ARGS=$*
    while (($#)); do
        case $1 in
            -n | --dry-run) DRY_RUN=1 ;;
            --uninstall) UNINSTALL=1 ;;
            --purge) PURGE=1 ;;
            -h | --help)
                usage
                exit 0
                ;;
            *)
                usage >&2
                die 64 "unknown option: $1"
                ;;
        esac
        shift
    done
    if ((PURGE && !UNINSTALL)); then
        die 64 "--purge only goes with --uninstall"
    fi
    if [[ -n $ROOT || -n ${DJSMILE_TEST_PYTHON:-} ]] && ((!DRY_RUN)); then
        die 64 "DJSMILE_TEST_ROOT and DJSMILE_TEST_PYTHON are only for --dry-run"
    fi
    if ((!DRY_RUN)) && ((EUID != 0)); then
        die 77 "must run as root: sudo $0${ORIG_ARGS:+ $ORIG_ARGS} (or add --dry-run to see what it would do)"
    fi
    if ((DRY_RUN)); then
        say "dry run: nothing is changed; every action is printed as 'would: ...'"
    fi
    if ((UNINSTALL)); then
        do_uninstall
    else
        do_install
    fi
}

main "$@"
