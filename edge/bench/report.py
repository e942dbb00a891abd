"""A bench's figures: per-variant statistics and JSON keys, ratios between variants, the table, the plot."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..fsutil import atomic_open, file_sha256
from ..stats import percentiles

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .run import Variant

log = logging.getLogger(__name__)

STAGES = ("capture", "detect", "classify", "trigger", "frame")


def stats(values) -> dict:
    """A stage's ``p50``, ``p95``, ``p99`` and ``mean`` in ms (``None`` without samples)."""
    return percentiles(values, (50, 95, 99), mean=True)


def variant_result(v: "Variant", runtime_import_ms: float = 0.0) -> dict:
    d = {"name": v.name}
    d["fps"] = round(v.measured / v.wall_s, 2) if v.wall_s > 0 else 0.0
    st = {s: stats(v.times[s]) for s in STAGES}
    d["frame_ms_p50"] = st["frame"]["p50"]
    d["frame_ms_p95"] = st["frame"]["p95"]
    d["detect_ms_p50"] = st["detect"]["p50"]
    d["classify_ms_p50"] = st["classify"]["p50"]
    d["cpu_percent"] = round(100.0 * v.cpu_s / v.wall_s, 1) if v.wall_s > 0 else 0.0
    d["peak_rss_mb"] = round(v.peak_rss_mb, 1)
    # more detail
    d.update({"model": str(v.model_path), "model_sha256": file_sha256(v.model_path)[:16],
              "model_bytes": v.model_path.stat().st_size, "model_input": v.model.runtime.input_dtype.name,
              "threads": v.threads, "mode": v.mode, "setting": v.setting, "full_every": v.full_every,
              "tracker": v.finder.tracker if v.full_every > 1 else None, "frames": v.measured,
              "detector": v.finder.detector.describe()})
    for s in STAGES:
        for k, val in st[s].items():
            d.setdefault(f"{s}_ms_{k}", val)
    dec = stats(v.times["decision"])
    d.update({  # --pace: None without one
        "pace_fps": v.pace,
        "frames_due": v.frames_due if v.pace else None,
        "dropped_frames": v.dropped if v.pace else None,
        "late_frames": v.late if v.pace else None,
        # late decisions and dropped frames (they never get one), over the frames the feeder made ready
        "late_frames_pct": (round(100.0 * (v.late + v.dropped) / v.frames_due, 2)
                            if v.pace and v.frames_due else None),
        "decision_ms_p50": dec["p50"] if v.pace else None,
        "decision_ms_p95": dec["p95"] if v.pace else None,
        "decision_ms_p99": dec["p99"] if v.pace else None,
        "async_full": getattr(v.finder, "async_full", None),
    })
    d.update({
        "faces_per_frame": round(v.faces / v.measured, 3) if v.measured else 0.0,
        "frames_with_face": v.frames_with_face,
        "full_detections": v.full_detections,
        "shots": v.actions.shots,
        # to the microsecond: frames / wall_s gives back fps even for a few fast frames
        "wall_s": round(v.wall_s, 6),
        "cpu_s": round(v.cpu_s, 6),
        # frames per second of process CPU time: what one free core would give a single-thread variant
        # (on a shared machine wall-clock fps falls with other programs' load; this much less)
        "fps_per_cpu": round(v.measured / v.cpu_s, 2) if v.cpu_s > 0 else None,
        "cascade_load_ms": round(v.cascade_load_ms, 2),
        "model_load_ms": round(v.model_load_ms, 2),
        "model_rss_mb": None if v.model_rss_mb is None else round(v.model_rss_mb, 2),
        "first_frame_ms": round(v.first_frame_ms, 2),
        # start-up as 'djsmile run' pays it once Python and OpenCV are imported (source opening apart)
        "startup_ms": round(runtime_import_ms + v.cascade_load_ms + v.model_load_ms + v.first_frame_ms, 1),
    })
    return d


def ratios(results: list[dict]) -> list[dict]:
    """For each factor (model, threads, mode): FPS of each level over the first level, other factors equal."""
    out = []
    keyf = {"model": lambda r: r["name"].split("/")[0], "threads": lambda r: r["threads"], "mode": lambda r: r["mode"],
            "setting": lambda r: r.get("setting", "config")}
    for factor, f in keyf.items():
        levels = list(dict.fromkeys(f(r) for r in results))
        if len(levels) < 2:
            continue
        base = levels[0]
        others = [g for g in keyf if g != factor]
        by_rest = {}
        for r in results:
            by_rest.setdefault(tuple(keyf[g](r) for g in others), {})[f(r)] = r
        for lev in levels[1:]:
            fps_r, p50_r = [], []
            for group in by_rest.values():
                a, b = group.get(lev), group.get(base)
                if a and b and b["fps"] and a["frame_ms_p50"] and b["frame_ms_p50"]:
                    fps_r.append(a["fps"] / b["fps"])
                    p50_r.append(a["frame_ms_p50"] / b["frame_ms_p50"])
            if fps_r:
                fmt = (lambda x: f"t{x}") if factor == "threads" else str
                out.append({"factor": factor, "a": fmt(lev), "b": fmt(base), "pairs": len(fps_r),
                            "fps_ratio": round(float(np.median(fps_r)), 3),
                            "fps_ratio_min": round(min(fps_r), 3), "fps_ratio_max": round(max(fps_r), 3),
                            "frame_ms_p50_ratio": round(float(np.median(p50_r)), 3)})
    return out


def _f(v, nd=2, width=7) -> str:
    return f"{'-':>{width}}" if v is None else f"{v:>{width}.{nd}f}"


def _first_per_model(results: list[dict]) -> list[dict]:
    seen: dict = {}
    for r in results:
        seen.setdefault(r["model"], r)
    return list(seen.values())


def format_table(report: dict) -> str:
    lines = []
    m, rt = report["machine"], report["runtime"]
    lines.append(f"djsmile bench {report['date']}: {report['source']}")
    lines.append(f"machine: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable)"
                 + (f", {m['board']}" if m.get("board") else "") + f"; {m['os']}; Python {m['python']}; "
                 f"OpenCV {m['opencv']}; runtime {rt['name']} {rt['version']}")
    lines.append(f"{report['frames']} timed frames per variant after {report['warmup']} warm-up, "
                 f"interleaved in chunks of {report['chunk']}; load average {m.get('loadavg_start')} -> "
                 f"{m.get('loadavg_end')}")
    lines.append("fps = timed frames / their wall time; fps/cpu = frames per second of process CPU time "
                 "(one free core); times in ms (median / p95 / p99); classify is per face; faces = faces per "
                 "frame; full% = frames with a full-frame detection; shots = trigger firings")
    if report.get("pace"):
        lines.append(f"paced at {report['pace']:g} fps like a camera: late% = frames decided after the next "
                     f"frame was due ({1e3 / report['pace']:.1f} ms), dropped ones included; drop = frames "
                     "dropped; decision = capture to trigger decision, ms; frame = the loop's work, capture "
                     "(waiting for the frame) excluded")
    w = max(len("variant"), *(len(v["name"]) for v in report["variants"]))
    head = (f"{'variant':<{w}} {'fps':>7} {'fps/cpu':>7} | {'frame p50':>9} {'p95':>6} {'p99':>6} | {'capture':>7} | "
            f"{'detect p50':>10} {'p95':>6} | {'classify':>8} {'p95':>6} | {'trigger':>7} | {'cpu%':>5} "
            f"{'rss MB':>6} | {'faces':>5} {'full%':>5} {'shots':>5}"
            + (f" | {'late%':>5} {'drop':>4} {'decision':>7} {'p95':>6} {'p99':>6}" if report.get("pace") else ""))
    lines.append(head)
    lines.append("-" * len(head))
    for v in report["variants"]:
        lines.append(
            f"{v['name']:<{w}} {v['fps']:>7.1f} {_f(v['fps_per_cpu'], 1, 7)} | "
            f"{_f(v['frame_ms_p50'], 2, 9)} {_f(v['frame_ms_p95'], 2, 6)} "
            f"{_f(v['frame_ms_p99'], 2, 6)} | {_f(v['capture_ms_p50'], 3, 7)} | {_f(v['detect_ms_p50'], 2, 10)} "
            f"{_f(v['detect_ms_p95'], 2, 6)} | {_f(v['classify_ms_p50'], 3, 8)} {_f(v['classify_ms_p95'], 3, 6)} | "
            f"{_f(v['trigger_ms_p50'], 3, 7)} | {v['cpu_percent']:>5.0f} {v['peak_rss_mb']:>6.0f} | "
            f"{v['faces_per_frame']:>5.2f} {100.0 * v['full_detections'] / max(1, v['frames']):>5.0f} "
            f"{v['shots']:>5d}"
            + (f" | {v['late_frames_pct']:>5.1f} {v['dropped_frames']:>4d} {_f(v['decision_ms_p50'], 2, 7)} "
               f"{_f(v['decision_ms_p95'], 2, 6)} {_f(v['decision_ms_p99'], 2, 6)}" if v.get("pace_fps") else ""))
    lines.append(f"start-up: runtime import {report['runtime_import_ms']:.0f} ms, source open "
                 f"{report['source_open_ms']:.0f} ms; " + "; ".join(
                     f"{v['model']}: load {v['model_load_ms']:.1f} ms, +{v['model_rss_mb'] or 0:.1f} MB, "
                     f"first frame {v['first_frame_ms']:.1f} ms"
                     for v in _first_per_model(report["variants"])))
    if report.get("ratios"):
        lines.append("ratios (median over variant pairs that differ only in that factor):")
        for r in report["ratios"]:
            lines.append(f"  {r['a']} vs {r['b']}: {r['fps_ratio']:.2f}x fps "
                         f"(range {r['fps_ratio_min']:.2f}-{r['fps_ratio_max']:.2f}, "
                         f"{r['pairs']} pair{'s' if r['pairs'] > 1 else ''}), "
                         f"median frame time {r['frame_ms_p50_ratio']:.2f}x")
    if report.get("detector_study"):
        lines.append("")
        lines.append(f"detector study ({report['detector_study'][0]['frames']} frames each, "
                     f"{report['study_threads']} OpenCV thread(s)); faces = frames with a face; "
                     "agree = largest box matches the first row's (IoU >= 0.5); speed-up = first row's "
                     "mean time / this row's")
        w2 = max(len(r["name"]) for r in report["detector_study"])
        lines.append(f"{'setting':<{w2}} {'mean ms':>8} {'p50 ms':>8} {'p95 ms':>8} {'speed-up':>8} "
                     f"{'faces':>6} {'agree':>6}")
        for r in report["detector_study"]:
            lines.append(f"{r['name']:<{w2}} {_f(r['detect_ms_mean'], 2, 8)} {_f(r['detect_ms_p50'], 2, 8)} "
                         f"{_f(r['detect_ms_p95'], 2, 8)} "
                         f"{_f(r['speedup_vs_first'], 2, 7)}x {r['frames_with_face']:>6d} "
                         f"{_f(r['agrees_with_first'], 2, 6)}")
    return "\n".join(lines)


def write_plot(path, variants: list["Variant"], title: str) -> bool:
    """Per-stage latency histograms, one panel per stage; False (and a log line) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no plot written (pip install matplotlib)")
        return False
    path = Path(path)
    fig, axes = plt.subplots(len(STAGES), 1, figsize=(9, 2.3 * len(STAGES)))
    for ax, stage in zip(axes, STAGES):
        allv = np.concatenate([np.asarray(v.times[stage], float) for v in variants] or [np.zeros(0)])
        if allv.size == 0:
            ax.set_title(f"{stage}: no samples")
            continue
        lo = max(float(allv.min()), 1e-3)
        hi = max(float(allv.max()), lo * 1.01)
        bins = np.geomspace(lo, hi, 60)  # log bins: tracked frames and full detections differ 10-50x
        for v in variants:
            vals = np.clip(np.asarray(v.times[stage], float), lo, hi)
            if vals.size:
                ax.hist(vals, bins=bins, histtype="step", label=v.name)
        ax.set_xscale("log")
        ax.set_title(f"{stage}" + (" (per face)" if stage == "classify" else ""), fontsize=10)
        ax.set_xlabel("ms (log scale)")
        ax.set_ylabel("frames")
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    try:
        with atomic_open(path) as f:   # whole or not at all
            fig.savefig(f, dpi=90, format=path.suffix.lstrip(".").lower() or "png")
    finally:
        plt.close(fig)
    log.info("latency histograms written to %s", path)
    return True
