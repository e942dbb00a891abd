# shellcheck shell=bash
# Sourced (never run) by scripts/check-pi-emulated.sh and scripts/check-camera-chroot.sh: their messages,
# the host's Debian mirror, .debs unpacked without installing them, a Raspberry Pi 4's /proc/cpuinfo.
# The sourcing script sets PROG (the name its messages start with) first.

say() { printf '%s: %s\n' "$PROG" "$*"; }
die() {
    local code=$1
    shift
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit "$code"
}

# host_mirror: the Debian mirror of the host's apt sources (deb822, else sources.list), else deb.debian.org
host_mirror() {
    local m
    m=$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)\/\?$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 || true)
    [[ -n $m ]] || m=$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    [[ -n $m ]] || m=http://deb.debian.org/debian
    printf '%s\n' "$m"
}

# unpack_debs DIR PKG...: apt-get download the packages into DIR/debs and unpack them into DIR with
# dpkg-deb -x: never installed (qemu-user-static's postinst would register binfmt_misc handlers for the host)
unpack_debs() {
    local dir=$1 what deb
    shift
    what=$(printf '%s and ' "$@")
    rm -rf "$dir"
    mkdir -p "$dir/debs"
    if ! (cd "$dir/debs" && apt-get download "$@" >/dev/null 2>&1); then
        apt-get update -qq || true
        (cd "$dir/debs" && apt-get download "$@") || die 69 "could not download ${what% and } with apt-get download"
    fi
    for deb in "$dir"/debs/*.deb; do
        dpkg-deb -x "$deb" "$dir"
    done
}

# unpack_root ROOT: the .debs debootstrap --foreign downloaded, unpacked into ROOT (the second stage needs
# the foreign binaries to run; maintainer scripts do not run), dpkg's status saying each one is installed
# (what the second stage would record, so dpkg-query in ROOT answers as on a Pi)
unpack_root() {
    local root=$1 deb
    for deb in "$root"/var/cache/apt/archives/*.deb; do
        dpkg-deb -x "$deb" "$root"
        { dpkg-deb -f "$deb" | sed '1a Status: install ok installed'; echo; } >>"$root/var/lib/dpkg/status"
    done
}

# pi4_cpuinfo ARCH: a Raspberry Pi 4's /proc/cpuinfo under a 64-bit (arm64) or 32-bit (armhf) kernel
# (LiteRT crashes on an x86 one)
pi4_cpuinfo() {
    local i features arch_line
    if [[ $1 == arm64 ]]; then
        features="fp asimd evtstrm crc32 cpuid"; arch_line=8
    else
        features="half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm crc32"; arch_line=7
    fi
    for i in 0 1 2 3; do
        printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: %s\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' \
            "$i" "$features" "$arch_line"
    done
    printf 'Hardware\t: BCM2835\nRevision\t: c03114\nSerial\t\t: 100000000000cafe\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n'
}
