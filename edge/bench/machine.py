"""The machine a bench ran on (CPU, board, OS, versions, load) and the process's memory."""

from __future__ import annotations

import os
import platform
import resource
import sys

import cv2
import numpy as np


_ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
              "0xd08": "Cortex-A72", "0xd0b": "Cortex-A76", "0xb76": "ARM1176", "0xc07": "Cortex-A7"}


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").replace("\x00", "").strip()
    except OSError:
        return None


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's name from /proc/cpuinfo (``model name``; on ARM the core type from ``CPU part``)."""
    text = _read("/proc/cpuinfo") if cpuinfo is None else cpuinfo
    if text:
        keys: dict[str, str] = {}
        for line in text.splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                keys.setdefault(k.strip().lower(), v.strip())
        if keys.get("model name"):
            return keys["model name"]
        part = _ARM_PARTS.get(keys.get("cpu part", "").lower())
        hw = keys.get("hardware")
        if part or hw:
            return " ".join(x for x in (part, f"({hw})" if hw else None) if x)
    return platform.processor() or platform.machine() or "unknown"


def os_name() -> str:
    text = _read("/etc/os-release") or ""
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return f"{platform.system()} {platform.release()}"


def machine_info() -> dict:
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "board": _read("/proc/device-tree/model"),
        "arch": platform.machine(),
        "os": os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "loadavg_start": load,
    }


def rss_mb_now() -> float | None:
    text = _read("/proc/self/statm")
    if not text:
        return None
    try:
        return int(text.split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (ValueError, IndexError, OSError):
        return None


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / 1024.0 / 1024.0  # macOS: bytes
