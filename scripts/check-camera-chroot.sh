#!/usr/bin/env bash
# The Pi camera on the real camera stack: djsmile's PiCamera2Source on the PyPI picamera2 (pinned) over
# libcamera 0.4's virtual camera (a software camera that plays JPEG files), in a Debian trixie chroot.
#
#   sudo scripts/check-camera-chroot.sh              build (or reuse) the chroot, install this checkout, check
#   sudo scripts/check-camera-chroot.sh --arch arm64 the same on the Pi's own CPU architecture, under qemu
#
# What it does (cached under --cache DIR, default ${XDG_CACHE_HOME:-~/.cache}/djsmile-camera):
#   1. debootstrap --variant=minbase trixie (the host's architecture) from the machine's Debian mirror, with
#      python3-libcamera (libcamera 0.4.0, the virtual pipeline compiled in); debootstrap itself is unpacked
#      from its .deb when the host has none (never installed). No libcamera-tools (Qt, 600 MB).
#   2. a --system-site-packages venv in it with picamera2==$PICAMERA2_VERSION and djsmile from this checkout.
#   3. test-only patches (scripts/camera-chroot/vcam_patches.py, loaded by a .pth file in the venv; never in
#      djsmile's code) for what this VM lacks and libcamera 0.4's virtual camera gets wrong: see that file.
#   4. faces from --photos, padded to 1280x720 JPEGs (the virtual camera's image generator overflows on odd
#      sizes) and each copied 50 times (a face held ~200 frames, as a person would), played by the camera:
#        djsmile run --source camera on smiling faces: >= 1 shot, the photo the main stream's size, in
#          colour, its sidecar's box on the face; on straight faces: 0 shots;
#        djsmile bench --source camera --frames 100;
#        djsmile calibrate --source camera (straight faces, then smiling ones, in name order);
#        the live view's /stream.mjpg: its frames decode, in colour.
#
# --arch arm64 on another machine (issue 26): the chroot is arm64 and runs under qemu-user (-cpu cortex-a72)
# through a binfmt_misc handler registered in a user namespace of its own (Linux >= 6.7): nothing is
# registered on the host. debootstrap's second stage under qemu takes ~6 minutes, so the .debs are unpacked
# on the host instead, as scripts/check-pi-emulated.sh does (dpkg status written, no maintainer scripts).
# A Raspberry Pi 4's /proc/cpuinfo is bound over the chroot's (LiteRT crashes on an x86 one). Emulated, the
# Haar detector runs, in the frame loop (detector.backend = "haar", async_full = "off"): see section 3.
#
# The virtual camera gives NV12 only (the RGB888 main asked for is adjusted to NV12), ignores FrameRate
# (frames come unpaced) and has no ISP, no sensor, no Pi-only controls: see the README's platform table.
# Exit: 0 passed; 1 a check failed; 64 usage; 66 no photos; 69 a tool or package could not be had; 77 not root.
set -euo pipefail

readonly PROG=check-camera-chroot
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$REPO/scripts/lib/common.sh"   # say, die, host_mirror, unpack_debs, unpack_root, pi4_cpuinfo
readonly PICAMERA2_VERSION=0.3.38   # the patches touch its internals: change both together
readonly SUITE=trixie
CACHE=${DJSMILE_CAMERA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/djsmile-camera}
PHOTOS=""
MIRROR=${DEBIAN_MIRROR:-}
REBUILD=0
SETUP_ONLY=0
ARCH_OPT=""

usage() {
    cat <<EOF
usage: $0 [--arch A] [--photos DIR] [--cache DIR] [--mirror URL] [--rebuild] [--setup-only]

Run djsmile on the real picamera2 + libcamera stack (libcamera's virtual camera) in a Debian $SUITE chroot.

  --photos DIR   smile/ and no_smile/ photo folders (default: \${DJSMILE_SHARED:-../shared}/datasets/djsmile/photos)
  --cache DIR    where the chroot and its pip cache live (default $CACHE)
  --mirror URL   Debian mirror (default: the host's apt source, else http://deb.debian.org/debian)
  --rebuild      rebuild the chroot and its venv from scratch
  --setup-only   build the chroot and venv, install djsmile, and stop
  --arch A       the chroot's architecture: this machine's (default) or arm64 (the Pi's, under qemu-user)
EOF
}

while (($#)); do
    case $1 in
        --photos) PHOTOS=${2:?}; shift ;;
        --cache) CACHE=${2:?}; shift ;;
        --mirror) MIRROR=${2:?}; shift ;;
        --rebuild) REBUILD=1 ;;
        --setup-only) SETUP_ONLY=1 ;;
        --arch) ARCH_OPT=${2:?}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die 64 "unknown option: $1" ;;
    esac
    shift
done

HOST_ARCH=$(dpkg --print-architecture)
ARCH=${ARCH_OPT:-$HOST_ARCH}
EMULATED=0
if [[ $ARCH != "$HOST_ARCH" ]]; then
    [[ $ARCH == arm64 ]] || die 64 "--arch must be $HOST_ARCH (this machine) or arm64, not '$ARCH'"
    EMULATED=1
fi
[[ -n $PHOTOS ]] || PHOTOS=${DJSMILE_SHARED:-$REPO/../shared}/datasets/djsmile/photos
[[ -d $PHOTOS/smile && -d $PHOTOS/no_smile ]] ||
    die 66 "photo folders $PHOTOS/smile and $PHOTOS/no_smile not found: pass --photos DIR"
((EUID == 0)) || die 77 "debootstrap and chroot need root: sudo $0 (nothing outside $CACHE is changed)"
[[ -n $MIRROR ]] || MIRROR=$(host_mirror)
MIRROR=${MIRROR%/}

T_START=$(date +%s)
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
TOOLS=$CACHE/tools
BASE=$CACHE/$SUITE-$ARCH
ROOT=$BASE/root
VENV=/opt/djsmile-venv         # inside the chroot
say "Debian $SUITE $ARCH chroot, picamera2 $PICAMERA2_VERSION; cache $CACHE; mirror $MIRROR"

# pip in the chroot uses the host's CA bundle and index when the host's pip has them (a TLS-inspecting
# proxy's CA, a local mirror); copied into the chroot at each run.
HOST_PIP_CERT=${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}
HOST_PIP_INDEX=${PIP_INDEX_URL:-$(python3 -m pip config get global.index-url 2>/dev/null || true)}
[[ $HOST_PIP_INDEX == http* ]] || HOST_PIP_INDEX=""
CHROOT_PIP_CERT=""

# Everything in the chroot runs in a private mount namespace: /proc, /sys and /dev are mounted there
# and vanish with it, whatever happens (nothing to unmount on the host). With --arch arm64 the namespace is
# also a user namespace of its own whose binfmt_misc (Linux >= 6.7) runs arm64 binaries with qemu
# (-cpu cortex-a72, as the Pi 4 is), with a Pi 4's /proc/cpuinfo bound over the chroot's.
# The script run in the namespace: ROOT QEMU ('' natively) CMD...
# shellcheck disable=SC2016  # the inner script's variables are its own
ENTER='
    set -e
    r=$1; q=$2; shift 2
    if [ -n "$q" ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
        m="\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
        k="\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
        printf "%s" ":djsmile-aarch64:M::$m:$k:$q:F" >/proc/sys/fs/binfmt_misc/register
    fi
    mount -t proc proc "$r/proc"
    [ -z "$q" ] || mount --bind "$r/etc/djsmile-cpuinfo" "$r/proc/cpuinfo"
    mount --rbind /sys "$r/sys"
    mount --rbind /dev "$r/dev"
    if [ -n "$PHOTOS_IN" ]; then
        mkdir -p "$r/mnt/djsmile-photos"
        mount --bind "$PHOTOS_IN" "$r/mnt/djsmile-photos"
        mount -o remount,bind,ro "$r/mnt/djsmile-photos"
    fi
    exec chroot "$r" "$@"'
QEMU=""
((EMULATED)) && QEMU=$CACHE/tools-qemu/usr/bin/qemu-aarch64-static
in_root() {  # CMD... : run CMD in the chroot with a clean environment (PHOTOS_IN=DIR: at /mnt/djsmile-photos, read-only)
    local -a envs=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
        DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CACHE_DIR=/var/cache/djsmile-pip)
    local fifo pid me rc=0
    if [[ -n $QEMU ]]; then envs+=(QEMU_CPU=cortex-a72); fi
    if [[ -n $CHROOT_PIP_CERT ]]; then envs+=("PIP_CERT=$CHROOT_PIP_CERT"); fi
    if [[ -n $HOST_PIP_INDEX ]]; then envs+=("PIP_INDEX_URL=$HOST_PIP_INDEX"); fi
    if [[ -n ${http_proxy:-} ]]; then envs+=("http_proxy=$http_proxy"); fi
    if [[ -n ${https_proxy:-} ]]; then envs+=("https_proxy=$https_proxy"); fi
    if [[ -n ${no_proxy:-} ]]; then envs+=("no_proxy=$no_proxy"); fi
    if [[ -z $QEMU ]]; then
        PHOTOS_IN=${PHOTOS_IN:-} unshare --mount --propagation private -- sh -c "$ENTER" sh "$ROOT" "" "${envs[@]}" "$@"
        return
    fi
    # arm64: uids 0-65535 map to themselves, so files keep their owners. The first sh waits until the map
    # is written, then execs the second, which has root's capabilities in the namespace: proc needs the
    # new pid namespace (the command is its pid 1).
    fifo=$(mktemp -u "${TMPDIR:-/tmp}/djsmile-ns.XXXXXX")
    mkfifo "$fifo"
    # shellcheck disable=SC2016  # the waiting sh's $0 and $@ are its own
    PHOTOS_IN=${PHOTOS_IN:-} unshare --user --mount --pid --fork --propagation private -- \
        sh -c 'read -r go <"$0" && exec "$@"' "$fifo" sh -c "$ENTER" sh "$ROOT" "$QEMU" "${envs[@]}" "$@" &
    pid=$!
    me=$(readlink /proc/self/ns/user)
    for _ in $(seq 400); do
        [[ $(readlink "/proc/$pid/ns/user" 2>/dev/null || true) == "$me" ]] || break
        sleep 0.05
    done
    echo '0 0 65536' >"/proc/$pid/uid_map"
    echo '0 0 65536' >"/proc/$pid/gid_map"
    echo go >"$fifo"
    rm -f "$fifo"
    wait "$pid" || rc=$?
    return "$rc"
}

if ((EMULATED)); then
    unshare --user --map-root-user --mount -- sh -c 'mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc' 2>/dev/null ||
        die 69 "--arch arm64 needs binfmt_misc in a user namespace (Linux 6.7 or newer; this is $(uname -r))"
fi

# ------------------------------------------------------------------ 1. the chroot
PACKAGES=python3-libcamera,python3-venv,python3-prctl,gcc,libc6-dev,python3-dev,ca-certificates
ROOT_KEY="$SUITE $ARCH $PACKAGES $MIRROR v1"
((EMULATED)) && ROOT_KEY+=" unpacked v1"
if ((EMULATED)) && { ((REBUILD)) || [[ ! -f $BASE/root.ok || $(cat "$BASE/root.ok") != "$ROOT_KEY" ]]; }; then
    Q=$CACHE/tools-qemu
    if [[ ! -x $QEMU || ! -x $Q/usr/sbin/debootstrap ]]; then
        say "unpacking qemu-user-static and debootstrap (dpkg-deb -x; not installed, no binfmt handlers on the host)"
        unpack_debs "$Q" qemu-user-static debootstrap
    fi
    t0=$(date +%s)
    say "building the $SUITE $ARCH chroot (debootstrap --foreign --variant=minbase, the .debs unpacked here)"
    rm -rf "$BASE"
    mkdir -p "$ROOT"
    DEBOOTSTRAP_DIR=$Q/usr/share/debootstrap "$Q/usr/sbin/debootstrap" --foreign --arch="$ARCH" --variant=minbase \
        --include="$PACKAGES" "$SUITE" "$ROOT" "$MIRROR" >"$BASE/debootstrap.log" 2>&1 ||
        { tail -n 20 "$BASE/debootstrap.log" >&2; die 69 "debootstrap failed (log: $BASE/debootstrap.log)"; }
    # What the second stage would leave that this check needs: the files, dpkg's status, the BLAS/LAPACK
    # links update-alternatives makes, the users and groups, the CA bundle (update-ca-certificates).
    unpack_root "$ROOT"
    rm -f "$ROOT"/var/cache/apt/archives/*.deb
    for lib in blas lapack; do
        [[ ! -e $ROOT/usr/lib/aarch64-linux-gnu/$lib/lib$lib.so.3 ]] ||
            ln -sf "$lib/lib$lib.so.3" "$ROOT/usr/lib/aarch64-linux-gnu/lib$lib.so.3"
    done
    for f in passwd group; do
        [[ -s $ROOT/etc/$f ]] || cp "$ROOT/usr/share/base-passwd/$f.master" "$ROOT/etc/$f"
    done
    mkdir -p "$ROOT/etc/ssl/certs"
    [[ -s $ROOT/etc/ssl/certs/ca-certificates.crt ]] || cp -L /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/"
    pi4_cpuinfo arm64 >"$ROOT/etc/djsmile-cpuinfo"   # bound over the chroot's /proc/cpuinfo
    # shellcheck disable=SC2016  # dpkg-query's format
    say "chroot built in $(($(date +%s) - t0)) s ($(du -sh "$ROOT" | cut -f1)): $(in_root dpkg-query -W -f '${Package} ${Version}' python3-libcamera)"
    printf '%s\n' "$ROOT_KEY" >"$BASE/root.ok"
elif ((REBUILD)) || [[ ! -f $BASE/root.ok || $(cat "$BASE/root.ok") != "$ROOT_KEY" ]]; then
    DEBOOTSTRAP=$(command -v debootstrap || true)
    if [[ -z $DEBOOTSTRAP ]]; then
        if [[ ! -x $TOOLS/usr/sbin/debootstrap ]]; then
            say "unpacking debootstrap (dpkg-deb -x; not installed)"
            unpack_debs "$TOOLS" debootstrap
        fi
        DEBOOTSTRAP=$TOOLS/usr/sbin/debootstrap
        export DEBOOTSTRAP_DIR=$TOOLS/usr/share/debootstrap
    fi
    t0=$(date +%s)
    say "building the $SUITE chroot (debootstrap --variant=minbase; a minute or two)"
    rm -rf "$BASE"
    mkdir -p "$ROOT"
    "$DEBOOTSTRAP" --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOT" "$MIRROR" >"$BASE/debootstrap.log" 2>&1 ||
        { tail -n 20 "$BASE/debootstrap.log" >&2; die 69 "debootstrap failed (log: $BASE/debootstrap.log)"; }
    rm -f "$ROOT"/var/cache/apt/archives/*.deb
    # shellcheck disable=SC2016  # dpkg-query's format
    say "chroot built in $(($(date +%s) - t0)) s ($(du -sh "$ROOT" | cut -f1)): $(in_root dpkg-query -W -f '${Package} ${Version}' python3-libcamera)"
    printf '%s\n' "$ROOT_KEY" >"$BASE/root.ok"
else
    say "chroot cached: $ROOT"
fi
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
if [[ -n $HOST_PIP_CERT && -f $HOST_PIP_CERT ]]; then
    cp -L "$HOST_PIP_CERT" "$ROOT/etc/ssl/djsmile-host-pip-ca.crt"
    CHROOT_PIP_CERT=/etc/ssl/djsmile-host-pip-ca.crt
fi

# ------------------------------------------------------------------ 2. the venv: picamera2 (pinned), djsmile
VENV_KEY="$ROOT_KEY picamera2==$PICAMERA2_VERSION v1"
t0=$(date +%s)
if ((REBUILD)) || [[ ! -f $BASE/venv.ok || $(cat "$BASE/venv.ok") != "$VENV_KEY" ]]; then
    rm -rf "$ROOT$VENV" "$BASE/venv.ok"
    in_root python3 -m venv --system-site-packages "$VENV"
    in_root "$VENV/bin/pip" install --quiet "picamera2==$PICAMERA2_VERSION" ||
        die 69 "pip could not install picamera2==$PICAMERA2_VERSION in the chroot"
    printf '%s\n' "$VENV_KEY" >"$BASE/venv.ok"
    say "venv with picamera2 $PICAMERA2_VERSION made in $(($(date +%s) - t0)) s"
fi
# This checkout, as a user would install it (not editable): pip reuses what is already installed.
rm -rf "$ROOT/opt/djsmile-src"
mkdir -p "$ROOT/opt/djsmile-src"
tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./.cache --exclude=./build --exclude=./out \
    --exclude='./*.egg-info' -cf - . | tar -C "$ROOT/opt/djsmile-src" -xf -
t0=$(date +%s)
in_root "$VENV/bin/pip" install --quiet /opt/djsmile-src >"$BASE/pip-djsmile.log" 2>&1 ||
    { tail -n 20 "$BASE/pip-djsmile.log" >&2; die 1 "pip install of this checkout failed in the chroot"; }
say "djsmile installed from this checkout in $(($(date +%s) - t0)) s"
((SETUP_ONLY)) && { say "set up in $(($(date +%s) - T_START)) s (--setup-only)"; exit 0; }

# ------------------------------------------------------------------ 3. the test-only patches, the camera
SITE=$(in_root "$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cp "$REPO/scripts/camera-chroot/vcam_patches.py" "$ROOT$SITE/djsmile_vcam_patches.py"
# Debian's sitecustomize shadows a venv's own: a .pth file is what a venv always runs.
echo "import djsmile_vcam_patches" >"$ROOT$SITE/djsmile_vcam_patches.pth"
VC=/opt/vcam
rm -rf "$ROOT$VC"
mkdir -p "$ROOT$VC/out" "$ROOT/usr/share/libcamera/pipeline/virtual"
cp "$REPO/scripts/camera-chroot/vcam_check.py" "$ROOT$VC/vcam_check.py"
# The virtual camera: exactly the two sizes djsmile asks for (any other size is changed to the largest),
# playing $VC/faces/play/ (0.jpg, 1.jpg, ...). It gives NV12 only, whatever format is asked for.
cat >"$ROOT/usr/share/libcamera/pipeline/virtual/virtual.yaml" <<EOT
%YAML 1.1
---
"Virtual0":
  supported_formats:
    - width: 1280
      height: 720
    - width: 640
      height: 360
  frames:
    path: "$VC/faces/play/"
  location: "CameraLocationFront"
  model: "djsmile-virtual"
EOT
cat >"$ROOT$VC/djsmile.toml" <<EOT
[camera]
width = 640
height = 360
still_width = 1280
still_height = 720
[speech]
engine = "none"
[gpio]
led_enabled = false
EOT
if ((EMULATED)); then
    # Under qemu a full Haar detection takes ~115 ms: in the loop, else the worker's boxes come too late to
    # track. BlazeFace (the default) takes ~440 ms there and the camera loop fell to 0.4 fps (600 frames would
    # be ~25 min): Haar here; BlazeFace on arm64 is checked against x86 by scripts/check-pi-emulated.sh.
    printf '[detector]\nbackend = "haar"\nasync_full = "off"\n' >>"$ROOT$VC/djsmile.toml"
fi

# ------------------------------------------------------------------ 4. the checks
FAILED=0
FORMATS_SHOWN=0   # the streams' formats are said once
LOGS=$BASE/logs
rm -rf "$LOGS"
mkdir -p "$LOGS"
check() {  # NAME CMD... : run CMD in the chroot, log to $LOGS/NAME.log, say its time; a failure is counted
    local name=$1 t rc
    shift
    t=$(date +%s.%N)
    set +e
    in_root env LIBCAMERA_LOG_LEVELS='*:ERROR' "$@" >"$LOGS/$name.log" 2>&1
    rc=$?
    set -e
    t=$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
    if ((rc == 0)); then
        grep -E '^(faces|play|shot|shots|stream|calibrated|bench):|Pi camera: (main|lores) stream is' "$LOGS/$name.log" |
            { if ((FORMATS_SHOWN)); then grep -v 'Pi camera:'; else cat; fi; } | sed 's/^/    /' || true
        grep -q 'Pi camera:' "$LOGS/$name.log" && FORMATS_SHOWN=1
        say "ok   $name ($t s)"
    else
        tail -n 25 "$LOGS/$name.log" | sed 's/^/    | /' >&2
        say "FAIL $name ($t s, exit $rc; log $LOGS/$name.log)"
        FAILED=$((FAILED + 1))
    fi
    return $rc
}
PY=$VENV/bin/python
RUN="$VENV/bin/djsmile run --source camera --config $VC/djsmile.toml --no-gpio --no-jokes"
# Faces the device's finder and model call clearly (the check is about the camera path, not the model).
PHOTOS_IN=$PHOTOS check faces "$PY" "$VC/vcam_check.py" prepare /mnt/djsmile-photos "$VC/faces" ||
    die 1 "no faces to play ($FAILED failed)"

# Each face ~200 frames (50 copies, 4 frames each), as a person holds a smile; frames come unpaced.
check run-smiling sh -c "$PY $VC/vcam_check.py frames $VC/faces smile:200 &&
    $RUN --state-dir $VC/out/smiling --max-frames 600 &&
    $PY $VC/vcam_check.py shots $VC/out/smiling $VC/faces --min 1" || true
check run-straight sh -c "$PY $VC/vcam_check.py frames $VC/faces straight:200 &&
    $RUN --state-dir $VC/out/straight --max-frames 600 &&
    $PY $VC/vcam_check.py shots $VC/out/straight $VC/faces --max 0" || true
check bench sh -c "$PY $VC/vcam_check.py frames $VC/faces smile:200 &&
    $VENV/bin/djsmile bench --source camera --config $VC/djsmile.toml --frames 100 --json $VC/out/bench.json &&
    $PY $VC/vcam_check.py bench $VC/out/bench.json --frames 100" || true
# The live view's colour stream from the camera: frames of /stream.mjpg decode, in colour.
check live-view sh -c "$PY $VC/vcam_check.py frames $VC/faces smile:200 &&
    { $RUN --state-dir $VC/out/web --web 127.0.0.1:18422 & pid=\$!;
      $PY $VC/vcam_check.py stream http://127.0.0.1:18422/stream.mjpg 5 --faces $VC/faces/smile --wait 60; rc=\$?;
      kill -TERM \$pid; wait \$pid; exit \$rc; }" || true
# Calibration: a straight face for the first phase, a smile for the second, in stream time. Paced at
# 30 fps (patch (e)) so the picture changes at a known time: 4 s phases = 30 images of 4 frames;
# straight 0-3.5 s, no face 3.5-4.5 s (those frames are skipped), smiling 4.5-9 s.
check calibrate sh -c "$PY $VC/vcam_check.py frames $VC/faces straight:26 blank:8 smile:34 &&
    DJSMILE_VCAM_FPS=30 $VENV/bin/djsmile calibrate --source camera --config $VC/djsmile.toml \
        --state-dir $VC/out/cal --seconds 4 --json $VC/out/calibration.json &&
    $PY -c 'import json; c = json.load(open(\"$VC/out/calibration.json\"));
print(\"calibrated:\", {k: c[k] for k in (\"on_threshold\", \"off_threshold\", \"frames_skipped\")},
      \"straight\", c[\"neutral\"], \"smile\", c[\"smile\"])'" || true

say "total $(($(date +%s) - T_START)) s"
((FAILED == 0)) || die 1 "$FAILED check(s) failed on the real picamera2 + libcamera stack (above)"
# shellcheck disable=SC2016  # dpkg-query's format
say "OK: djsmile on picamera2 $PICAMERA2_VERSION + libcamera $(in_root dpkg-query -W -f '${Version}' libcamera0.4 2>/dev/null || echo 0.4)'s virtual camera"
