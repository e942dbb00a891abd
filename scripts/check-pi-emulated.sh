#!/usr/bin/env bash
# Emulated Raspberry Pi check: djsmile on an arm64 (or armhf) Debian userland under qemu-user,
# installed the way the README's Quick start installs it on a Pi, compared with the same runs on x86.
#
#   scripts/check-pi-emulated.sh                      arm64 Bookworm (Pi OS Bookworm 64-bit: Debian 12, Python 3.11)
#   scripts/check-pi-emulated.sh --suite trixie       arm64 Trixie (Debian 13, Python 3.13)
#   scripts/check-pi-emulated.sh --arch armhf         32-bit (armv7l) Bookworm
#
# What it does (cached under --cache DIR, default ${XDG_CACHE_HOME:-~/.cache}/djsmile-pi; a warm run reuses it):
#   1. unpacks qemu-user-static and debootstrap from their .debs with dpkg-deb -x. They are NEVER
#      installed: the package's postinst would register binfmt_misc handlers for the whole host.
#   2. debootstrap --foreign --variant=minbase of the suite with python3, python3-venv, apt's
#      python3-numpy (1.24 on Bookworm) and its BLAS/LAPACK; unpacks every .deb itself (qemu cannot
#      run the second stage without binfmt) and makes the libblas/liblapack links update-alternatives
#      would make; writes a Raspberry Pi 4 /proc/cpuinfo into the userland (LiteRT crashes on an x86 one).
#   3. runs the userland's /usr/bin/python3 as `qemu -cpu cortex-a72 -L ROOT` (never qemu's default
#      `-cpu max`: LiteRT then returns the same score for every input), makes a --system-site-packages
#      venv whose python is a small wrapper around qemu (so pip's child processes run too), bootstraps
#      pip from the userland's bundled wheel, and installs djsmile with the Makefile's own recipe
#      (`make venv`, i.e. scripts/pip-install.sh: apt's numpy pinned) so pip resolves wheels as a Pi does.
#   4. fails if the venv's numpy is not apt's numpy (a pip numpy 2 over it breaks python3-picamera2);
#      runs `systemd/install.sh --dry-run` against the userland (its os-release, dpkg status, apt
#      lists, Python and `uname -m`): it must pass and say what replaces a missing python3-lgpio in
#      one line.
#   5. runs `djsmile run` on a folder of real photos with GPIO on, as `make run` does (no lgpio in the
#      venv: the arm side must say so in one line), a per-frame scoring run (python -m
#      djsmile.crosscheck score) and `djsmile bench --frames 60`, the same on x86 (the repo's .venv),
#      and compares: gray frames and face boxes equal, |p_smile| within --tolerance, the same shots.
#
# Exit: 0 agree; 1 disagree (or numpy not apt's); 64 usage; 69 a tool or package could not be had.
# Emulated timings are a smoke test of the code path: they say nothing about a Pi's speed.
set -euo pipefail

readonly PROG=check-pi-emulated
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$REPO/scripts/lib/common.sh"   # say, die, host_mirror, unpack_debs, unpack_root, pi4_cpuinfo

ARCH=arm64
SUITE=bookworm
CACHE=${DJSMILE_PI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/djsmile-pi}
PHOTOS=""
MAX_PHOTOS=40
# Why 0.06: on identical crops the int8 interpreter is bit-exact between x86 and arm; what differs
# is cv2.resize(INTER_LINEAR) enlarging a face crop smaller than the model input (up to 2 grey
# levels between the x86 and arm builds of OpenCV), measured at up to 0.047 in p_smile. 0.06 is that
# plus 3 int8 output steps (1/256 each); a real arm bug (wrong kernels, `-cpu max`) is off by far more.
TOLERANCE=0.06
# A face whose crop was enlarged and differs between the two runs gets a tolerance of its own: with
# BlazeFace (the default since issue 27) 8 of 28 faces were enlarged and one moved 0.070 (0.3203 vs
# 0.2500, arm64 Bookworm, 2026-12-06). 0.10 is that plus the same margin; every face whose model input
# is the same bytes on both keeps 0.06 (they were equal), so a wrong arm kernel still shows.
ENLARGED_TOLERANCE=0.10
HOST_PY=""
MIRROR=${DEBIAN_MIRROR:-}
REBUILD=0

usage() {
    cat <<EOF
usage: $0 [--arch arm64|armhf] [--suite bookworm|trixie] [--photos DIR] [--max-photos N]
          [--tolerance P] [--enlarged-tolerance P] [--cache DIR] [--host-python PY] [--mirror URL] [--rebuild]

Install djsmile in an emulated Raspberry Pi OS-like userland (qemu-user, no binfmt, no chroot),
run it on real photos and compare with x86. Emulated figures are a smoke test, not Pi performance.

  --arch A          arm64 (default; Pi 3/4/5 on 64-bit Pi OS) or armhf (32-bit Pi OS, armv7l)
  --suite S         bookworm (default; Pi OS Bookworm, Python 3.11) or trixie (Python 3.13)
  --photos DIR      image folder to run on (default: ${DJSMILE_SHARED:-../shared}/datasets/djsmile/photos)
  --max-photos N    use the first N images (sorted by path) of the photo folder (default $MAX_PHOTOS)
  --tolerance P     largest allowed |p_smile| difference x86 vs arm (default $TOLERANCE)
  --enlarged-tolerance P  the same for a face whose enlarged crop differs between them (default $ENLARGED_TOLERANCE)
  --cache DIR       where the userland, tools and pip cache live (default $CACHE)
  --host-python PY  the x86 side's python with djsmile installed (default: the repo's .venv, made with 'make venv')
  --mirror URL      Debian mirror (default: the host's apt source, else http://deb.debian.org/debian)
  --rebuild         rebuild the userland and venv from scratch
EOF
}

while (($#)); do
    case $1 in
        --arch) ARCH=${2:?}; shift ;;
        --suite) SUITE=${2:?}; shift ;;
        --photos) PHOTOS=${2:?}; shift ;;
        --max-photos) MAX_PHOTOS=${2:?}; shift ;;
        --tolerance) TOLERANCE=${2:?}; shift ;;
        --enlarged-tolerance) ENLARGED_TOLERANCE=${2:?}; shift ;;
        --cache) CACHE=${2:?}; shift ;;
        --host-python) HOST_PY=${2:?}; shift ;;
        --mirror) MIRROR=${2:?}; shift ;;
        --rebuild) REBUILD=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die 64 "unknown option: $1" ;;
    esac
    shift
done

case $ARCH in
    arm64) QEMU_NAME=qemu-aarch64-static; CPU=cortex-a72; TRIPLET=aarch64-linux-gnu ;;
    armhf) QEMU_NAME=qemu-arm-static; CPU=cortex-a7; TRIPLET=arm-linux-gnueabihf ;;
    *) die 64 "--arch must be arm64 or armhf, not '$ARCH'" ;;
esac
case $SUITE in
    bookworm) PYV=3.11 ;;
    trixie) PYV=3.13 ;;
    *) die 64 "--suite must be bookworm or trixie, not '$SUITE'" ;;
esac
[[ $MAX_PHOTOS =~ ^[1-9][0-9]*$ ]] || die 64 "--max-photos must be a positive whole number, not '$MAX_PHOTOS'"
[[ $TOLERANCE =~ ^0?\.[0-9]+$|^[01]$ ]] || die 64 "--tolerance must be a number from 0 to 1, not '$TOLERANCE'"
[[ $ENLARGED_TOLERANCE =~ ^0?\.[0-9]+$|^[01]$ ]] ||
    die 64 "--enlarged-tolerance must be a number from 0 to 1, not '$ENLARGED_TOLERANCE'"
[[ -n $PHOTOS ]] || PHOTOS=${DJSMILE_SHARED:-$REPO/../shared}/datasets/djsmile/photos
[[ -d $PHOTOS ]] || die 66 "photo folder $PHOTOS not found: pass --photos DIR (a folder of real photos with faces)"
((EUID == 0)) || die 77 "debootstrap needs root: sudo $0 (nothing outside $CACHE is changed)"
[[ -n $MIRROR ]] || MIRROR=$(host_mirror)
MIRROR=${MIRROR%/}

T_START=$(date +%s)
elapsed() { echo $(($(date +%s) - T_START)); }
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
TOOLS=$CACHE/tools
QEMU=$TOOLS/usr/bin/$QEMU_NAME
BASE=$CACHE/$SUITE-$ARCH
ROOT=$BASE/root
VENV=$BASE/venv
WORK=$BASE/work
EMU_PY=$BASE/bin/python3
# One check per userland at a time (CI and a developer, or two helpers, on one machine share the cache).
mkdir -p "$BASE"
exec 9>"$CACHE/$SUITE-$ARCH.lock"
if ! flock -n 9; then
    say "waiting for another check-pi-emulated run on $SUITE $ARCH (lock $CACHE/$SUITE-$ARCH.lock)"
    flock 9
fi
say "arm $ARCH $SUITE (Python $PYV) under qemu-user -cpu $CPU; cache $CACHE; mirror $MIRROR"
say "NOTE: emulated figures below are a smoke test of the code path, never Raspberry Pi performance"

# ------------------------------------------------------------------ 1. qemu and debootstrap, unpacked only
if [[ ! -x $QEMU || ! -x $TOOLS/usr/sbin/debootstrap ]]; then
    say "unpacking qemu-user-static and debootstrap (dpkg-deb -x; not installed, no binfmt handlers)"
    unpack_debs "$TOOLS" qemu-user-static debootstrap
fi
[[ -x $QEMU ]] || die 69 "$QEMU missing after unpacking qemu-user-static"
say "qemu: $("$QEMU" --version | head -n1)"

# ------------------------------------------------------------------ 2. the userland
PACKAGES=python3,python3-venv,python3-pip,python3-numpy,libblas3,liblapack3,libstdc++6
USERLAND_KEY="$SUITE $ARCH $PACKAGES $MIRROR v2"
debootstrap_foreign() {
    DEBOOTSTRAP_DIR=$TOOLS/usr/share/debootstrap "$TOOLS/usr/sbin/debootstrap" --foreign --arch="$ARCH" \
        --variant=minbase --include="$1" "$SUITE" "$ROOT" "$MIRROR" >"$BASE/debootstrap.log" 2>&1
}
if ((REBUILD)) || [[ ! -f $BASE/userland.ok || $(cat "$BASE/userland.ok") != "$USERLAND_KEY" ]]; then
    t0=$(date +%s)
    say "building the $SUITE $ARCH userland (debootstrap --foreign --variant=minbase; a few minutes)"
    rm -rf "$BASE"
    mkdir -p "$ROOT"
    # python3-simplejpeg (what python3-picamera2 needs besides numpy) when Debian main has it. The host's
    # apt answers for its own release (saves a failed debootstrap run); other releases are tried.
    with_sj="$PACKAGES,python3-simplejpeg"
    # shellcheck disable=SC1091  # a system file
    host_codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
    if [[ $host_codename == "$SUITE" ]] && ! apt-cache show python3-simplejpeg >/dev/null 2>&1; then
        say "python3-simplejpeg: not in Debian $SUITE main (Raspberry Pi OS's archive has it): left out"
        with_sj=$PACKAGES
    fi
    if ! debootstrap_foreign "$with_sj"; then
        if grep -q "python3-simplejpeg" "$BASE/debootstrap.log"; then
            say "python3-simplejpeg: not in Debian $SUITE main (Raspberry Pi OS's archive has it): left out"
            rm -rf "$ROOT"
            mkdir -p "$ROOT"
            debootstrap_foreign "$PACKAGES" ||
                { tail -n 20 "$BASE/debootstrap.log" >&2; die 69 "debootstrap failed (log: $BASE/debootstrap.log)"; }
        else
            tail -n 20 "$BASE/debootstrap.log" >&2
            die 69 "debootstrap failed (log: $BASE/debootstrap.log)"
        fi
    fi
    # The second stage needs the arm binaries to run; every package is unpacked here instead (the links
    # maintainer scripts would make are made below); dpkg-query in the userland answers as on a Pi
    # (install.sh asks it).
    unpack_root "$ROOT"
    ln -sf blas/libblas.so.3 "$ROOT/usr/lib/$TRIPLET/libblas.so.3"
    ln -sf lapack/liblapack.so.3 "$ROOT/usr/lib/$TRIPLET/liblapack.so.3"
    find "$ROOT"/var/cache/apt/archives -name '*.deb' -printf '%f\n' | sort >"$BASE/packages.txt"
    rm -f "$ROOT"/var/cache/apt/archives/*.deb
    mkdir -p "$ROOT/proc"
    pi4_cpuinfo "$ARCH" >"$ROOT/proc/cpuinfo"
    printf '%s\n' "$USERLAND_KEY" >"$BASE/userland.ok"
    say "userland built in $(($(date +%s) - t0)) s ($(du -sh "$ROOT" | cut -f1))"
else
    say "userland cached: $ROOT"
fi
[[ -x $ROOT/usr/bin/python$PYV ]] || die 69 "no python$PYV in the $SUITE userland"

# The userland's /usr/bin/python3, run by qemu. argv[0] stays the userland's path, so Python finds
# its prefix (ROOT/usr) by host paths: qemu 7.2 does not apply -L to statx, so lookups by absolute
# guest paths can see the host's files instead.
mkdir -p "$BASE/bin"
cat >"$EMU_PY" <<EOF
#!/bin/sh
exec "$QEMU" -cpu $CPU -L "$ROOT" "$ROOT/usr/bin/python$PYV" "\$@"
EOF
chmod +x "$EMU_PY"
say "emulated: $("$EMU_PY" -c 'import platform, sys; print(platform.machine(), "Python", sys.version.split()[0])'), apt numpy $("$EMU_PY" -c 'import numpy; print(numpy.__version__)')"
# What python3-picamera2 would bring on Pi OS: report what Debian main has.
for pkg in python3-simplejpeg python3-picamera2 python3-lgpio python3-rpi-lgpio; do
    if grep -q "^${pkg}_" "$BASE/packages.txt"; then
        say "$pkg: installed from Debian $SUITE main"
    elif grep -qx "Package: $pkg" "$ROOT"/var/lib/apt/lists/*Packages 2>/dev/null; then
        say "$pkg: in Debian $SUITE main, not installed here"
    else
        say "$pkg: not in Debian $SUITE main (Raspberry Pi OS's own archive has it): not installed here"
    fi
done

# ------------------------------------------------------------------ 3. the venv, installed as on a Pi
# The Makefile's recipe, with the userland's python3 as the "system" python. The one difference from
# `make venv` on a Pi: the venv's python is a wrapper around qemu (made here, as `python3 -m venv`
# links the arm binary, which the host cannot exec without binfmt); pip is bootstrapped from the
# userland's bundled wheel, then upgraded and djsmile installed by the Makefile's own lines.
SRC=$WORK/src
rm -rf "$WORK"
mkdir -p "$SRC" "$WORK/photos"
tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./.cache --exclude=./build \
    --exclude='./*.egg-info' -cf - . | tar -C "$SRC" -xf -
export PIP_CACHE_DIR=$CACHE/pip-cache   # arm wheels stay out of the host's pip cache
mkdir -p "$PIP_CACHE_DIR"
if [[ $ARCH == armhf ]]; then
    # 32-bit Pi OS's /etc/pip.conf adds piwheels (PyPI has no armv7l numpy/opencv wheels); do the same,
    # and take those two as wheels only: a missing wheel fails at once instead of an hours-long emulated build.
    host_extra=$(python3 -m pip config get global.extra-index-url 2>/dev/null || true)
    export PIP_EXTRA_INDEX_URL="${host_extra:+$host_extra }https://www.piwheels.org/simple"
    export PIP_ONLY_BINARY=numpy,opencv-python-headless
fi
t0=$(date +%s)
if ((REBUILD)) || [[ ! -x $VENV/bin/pip ]]; then
    rm -rf "$VENV"
    "$EMU_PY" -m venv --system-site-packages --without-pip "$VENV"
    rm -f "$VENV/bin/python" "$VENV/bin/python3" "$VENV/bin/python$PYV"
    cat >"$VENV/bin/python$PYV" <<EOT
#!/bin/sh
exec "$QEMU" -cpu $CPU -L "$ROOT" -0 "$VENV/bin/python$PYV" "$ROOT/usr/bin/python$PYV" "\$@"
EOT
    chmod +x "$VENV/bin/python$PYV"
    ln -s "python$PYV" "$VENV/bin/python"
    ln -s "python$PYV" "$VENV/bin/python3"
    whl=$(find "$ROOT"/usr/share/python-wheels -name 'pip-*.whl' | sort | tail -n1)
    [[ -f $whl ]] || die 69 "no bundled pip wheel in the userland (python3-pip-whl)"
    "$VENV/bin/python" "$whl/pip" install --quiet --no-index "$whl"
    # The Makefile's $(BIN)/python recipe, second line:
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
say "pip config the emulated pip sees (the host's, read through qemu -L):"
"$VENV/bin/python" -m pip config list | sed 's/^/    /'
# The Makefile's install recipe, run by make itself (PYTHON = the system python3 it pins numpy from).
make -C "$SRC" --no-print-directory venv PYTHON="$EMU_PY" VENV="$VENV" ||
    die 1 "make venv failed in the emulated $SUITE $ARCH userland"
say "installed in $(($(date +%s) - t0)) s: $("$VENV/bin/python" -m pip list 2>/dev/null |
    awk 'tolower($1) ~ /^(numpy|opencv-python-headless|ai-edge-litert|tflite-runtime|ml-dtypes|ml_dtypes|gpiozero)$/ {printf "%s %s, ", $1, $2}')"

# ------------------------------------------------------------------ 4. apt's numpy, not a pip numpy 2
sys_numpy=$("$EMU_PY" -c 'import numpy; print(numpy.__version__, numpy.__file__)')
venv_numpy=$("$VENV/bin/python" -c 'import numpy; print(numpy.__version__, numpy.__file__)')
say "numpy: system $sys_numpy; venv $venv_numpy"
if [[ $sys_numpy != "$venv_numpy" ]]; then
    die 1 "the install put numpy ${venv_numpy%% *} over apt's ${sys_numpy%% *} in the venv: python3-picamera2 would not import"
fi

# systemd/install.sh --dry-run on the userland: its files (DJSMILE_TEST_ROOT), its Python
# (DJSMILE_TEST_PYTHON) and, through small wrappers first on PATH, its own uname, dpkg-query and
# apt-cache run by qemu. user and group lookups are the host's. /run/systemd/system is made as on a booted Pi.
SHIMS=$BASE/shims
mkdir -p "$SHIMS" "$ROOT/run/systemd/system"
printf '#!/bin/sh\nexec "%s" -cpu %s -L "%s" "%s/usr/bin/uname" "$@"\n' "$QEMU" "$CPU" "$ROOT" "$ROOT" >"$SHIMS/uname"
printf '#!/bin/sh\nexec "%s" -cpu %s -L "%s" "%s/usr/bin/dpkg-query" --admindir="%s/var/lib/dpkg" "$@"\n' \
    "$QEMU" "$CPU" "$ROOT" "$ROOT" "$ROOT" >"$SHIMS/dpkg-query"
printf '#!/bin/sh\nexec "%s" -cpu %s -L "%s" "%s/usr/bin/apt-cache" -o Dir="%s/" "$@"\n' \
    "$QEMU" "$CPU" "$ROOT" "$ROOT" "$ROOT" >"$SHIMS/apt-cache"
chmod +x "$SHIMS"/*
t0=$(date +%s)
set +e
PATH=$SHIMS:$PATH DJSMILE_TEST_ROOT=$ROOT DJSMILE_TEST_PYTHON=$EMU_PY "$SRC/systemd/install.sh" --dry-run \
    >"$WORK/install-dry-run.log" 2>&1
rc=$?
set -e
((rc == 0)) || { cat "$WORK/install-dry-run.log" >&2; die 1 "systemd/install.sh --dry-run failed (exit $rc) in the emulated $SUITE $ARCH userland"; }
mapfile -t lgpio_lines < <(grep -i 'lgpio' "$WORK/install-dry-run.log" | grep -v '^would: ' || true)
say "install.sh --dry-run: exit 0 in $(($(date +%s) - t0)) s, $(grep -c '^would: ' "$WORK/install-dry-run.log") actions; what it says:"
grep -E '^(djsmile-install: (system|python|warning)|would: .*(apt-get install|-m venv|pip-install))' "$WORK/install-dry-run.log" | sed 's/^/    /'
if ! grep -q "^Package: python3-lgpio\$" "$ROOT/var/lib/dpkg/status" && ((${#lgpio_lines[@]} != 1)); then
    die 1 "install.sh said ${#lgpio_lines[@]} lines about the missing python3-lgpio, not one: ${lgpio_lines[*]}"
fi

# ------------------------------------------------------------------ 5. the same runs on x86 and arm
# N photos spread evenly over the folder (sorted by path), copied flat with their order kept.
mapfile -t all < <(find "$PHOTOS" -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) | sort -V)
((${#all[@]})) || die 66 "no .jpg/.png images under $PHOTOS"
n=$((${#all[@]} < MAX_PHOTOS ? ${#all[@]} : MAX_PHOTOS))
for ((i = 0; i < n; i++)); do
    f=${all[$((i * ${#all[@]} / n))]}
    cp "$f" "$WORK/photos/$(printf '%03d' "$i")_$(basename "$(dirname "$f")")_$(basename "$f")"
done
say "photos: $n of ${#all[@]} under $PHOTOS"

if [[ -z $HOST_PY ]]; then
    HOST_PY=$REPO/.venv/bin/python
    if [[ ! -x $HOST_PY ]] || ! "$HOST_PY" -c 'import djsmile' 2>/dev/null; then
        say "x86 side: the repo's .venv (make venv)"
        make -C "$REPO" --no-print-directory venv
    fi
fi

run_side() {  # NAME PYTHON
    local name=$1 py=$2 out=$WORK/$1 t
    mkdir -p "$out"
    t=$(date +%s)
    # Each photo is a scene of its own; with no cooldown and any face, every photo with a smile is
    # a shot, so "the same shots" compares one decision per photo. GPIO is on, as with `make run`;
    # without CAP_SYS_RAWIO, so gpiozero's native pins can never map the host's /dev/mem.
    setpriv --bounding-set=-sys_rawio --inh-caps=-sys_rawio \
        "$py" -m djsmile run --source "$WORK/photos" --state-dir "$out/state" --no-jokes --policy any \
        --set trigger.cooldown_s=0 --set trigger.rearm=false --log-level WARNING >"$out/run.log" 2>&1 || { cat "$out/run.log" >&2; die 1 "$name: djsmile run failed"; }
    touch "$out/state/events.jsonl"
    "$py" -m djsmile.crosscheck score "$WORK/photos" --out "$out/frames.jsonl" >"$out/score.log" 2>&1 ||
        { cat "$out/score.log" >&2; die 1 "$name: per-frame scoring failed"; }
    "$py" -m djsmile bench --source "$WORK/photos" --frames 60 --warmup 10 --json "$out/bench.json" \
        >"$out/bench.txt" 2>"$out/bench.log" || { cat "$out/bench.log" >&2; die 1 "$name: djsmile bench failed"; }
    say "$name: run + scoring + bench in $(($(date +%s) - t)) s; $(wc -l <"$out/state/events.jsonl") shots"
}
run_side x86 "$HOST_PY"
run_side arm "$VENV/bin/python"
# What `make run` says about GPIO on the (emulated) Pi: no lgpio in the venv, no /dev/gpiomem.
mapfile -t gpio_lines < <(grep 'GPIO' "$WORK/arm/run.log" || true)
say "arm: djsmile run's GPIO line(s) (make run, no lgpio in the venv): ${#gpio_lines[@]}"
printf '    %s\n' "${gpio_lines[@]}"
if ((${#gpio_lines[@]} != 1)) || [[ ${gpio_lines[0]} != WARNING*python3-lgpio* ]]; then
    die 1 "djsmile run on the emulated Pi should say in one WARNING line that no pin library works and name python3-lgpio"
fi
say "bench on x86 (this machine):"
sed 's/^/    /' "$WORK/x86/bench.txt"
say "bench on $ARCH under qemu-user: EMULATED, a smoke test; these timings are NOT Raspberry Pi performance:"
sed 's/^/    /' "$WORK/arm/bench.txt"

# ------------------------------------------------------------------ 6. compare
set +e
"$HOST_PY" -m djsmile.crosscheck compare "$WORK/x86/frames.jsonl" "$WORK/arm/frames.jsonl" \
    --tolerance "$TOLERANCE" --enlarged-tolerance "$ENLARGED_TOLERANCE" --events "$WORK/x86/state/events.jsonl" "$WORK/arm/state/events.jsonl" \
    --json "$WORK/agreement.json"
rc=$?
set -e
say "figures: $WORK/agreement.json; total $(elapsed) s"
if ((rc != 0)); then
    die 1 "x86 and emulated $SUITE $ARCH disagree (above)"
fi
say "OK: emulated $SUITE $ARCH agrees with x86 (frames, boxes, p_smile within $TOLERANCE or $ENLARGED_TOLERANCE on an enlarged crop that differs, shots)"
