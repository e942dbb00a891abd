"""Which ``small`` networks fit the device budget: int8 file size and one-face latency, before any training.

::

    python -m djsmile.training.budget --sizes 48,56,64 --widths 32,64,128,256 --widths 48,96,192,256

Size and speed do not depend on the weights, so each candidate is built with
random weights, converted to full-integer int8 exactly as ``djsmile convert``
does (random representative crops), and timed single-threaded through
``djsmile.runtime.Runtime`` (batch 1), interleaved in rounds with the
reference model (default: the shipped ``models/smile_int8.tflite``) so that
load from other programs hits all alike; the ratio to the reference is the
figure to trust on a busy machine. Accuracy needs training: choose among the
candidates that fit on val.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

#: the device budget (issue 18): int8, 1 thread, this machine
BUDGET_MS = 1.0
BUDGET_BYTES = 250_000


def fits(median_ms: float, size_bytes: int, ms: float = BUDGET_MS, max_bytes: int = BUDGET_BYTES) -> bool:
    return median_ms <= ms and size_bytes <= max_bytes


def input_sizes_of(rt):
    """What :func:`time_interleaved` feeds a runtime: its side (one input) or ``{input name: side}`` (a paired
    smile model's several inputs)."""
    if len(rt.input_names) > 1:
        return {n: int(shp[1]) for n, shp in zip(rt.input_names, rt.input_shapes)}
    return int(rt.input_shape[1])


def time_interleaved(runtimes: dict, input_sizes: dict, rounds: int = 10, per_round: int = 40) -> dict:
    """Median ms per model over ``rounds`` x ``per_round`` single-face runs, models taking turns each round.

    ``input_sizes``: per model, the side of its one square input, or ``{input name: side}`` for a model with several
    inputs (one face = one crop per input, one invoke)."""
    rng = np.random.default_rng(0)

    def face(s):
        return rng.random((1, s, s, 1), np.float32)
    steps = {}
    for k, s in input_sizes.items():
        rt = runtimes[k]
        if isinstance(s, dict):
            feed = {n: face(v) for n, v in s.items()}
            steps[k] = (lambda rt=rt, feed=feed: rt.run_named(feed))
        else:
            x = face(s)
            steps[k] = (lambda rt=rt, x=x: rt.run(x))
    ts: dict = {k: [] for k in runtimes}
    for k in runtimes:
        for _ in range(20):
            steps[k]()
    keys = list(runtimes)
    for r in range(rounds):
        order = keys[r % len(keys):] + keys[:r % len(keys)]
        for k in order:
            step = steps[k]
            for _ in range(per_round):
                t = time.perf_counter()
                step()
                ts[k].append((time.perf_counter() - t) * 1e3)
    return {k: float(np.median(v)) for k, v in ts.items()}


def main(argv=None) -> int:
    from djsmile.convert.tflite import convert
    from djsmile.model import default_model_path
    from djsmile.runtime import Runtime
    from . import nets
    ap = argparse.ArgumentParser(prog="python -m djsmile.training.budget", description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="48,56,64")
    ap.add_argument("--widths", action="append", default=[], metavar="W1,W2,W3,W4")
    ap.add_argument("--reference", default=None, help="int8 model to time beside them (default: the shipped one)")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    widths = [tuple(int(v) for v in w.split(",")) for w in (args.widths or ["32,64,128,256"])]
    sizes = [int(s) for s in args.sizes.split(",")]
    ref = Path(args.reference or default_model_path())
    tmp = Path(tempfile.mkdtemp(prefix="djsmile-budget-"))
    rows = {}
    rts, ins = {"reference": Runtime(ref, num_threads=1)}, {}
    ins["reference"] = input_sizes_of(rts["reference"])
    for S in sizes:
        for w in widths:
            name = f"{S}px {'-'.join(map(str, w))}"
            m = nets.small(S, widths=w)
            rep = np.random.default_rng(0).random((64, S, S, 1)).astype(np.float32)
            rep[0, 0, 0, 0], rep[0, 0, 1, 0] = 0.0, 1.0
            blob = convert(m, S, rep)
            p = tmp / f"{S}_{'_'.join(map(str, w))}.tflite"
            p.write_bytes(blob)
            rows[name] = {"input_size": S, "widths": list(w), "parameters": int(m.count_params()), "bytes": len(blob)}
            rts[name], ins[name] = Runtime(p, num_threads=1), S
            print(f"converted {name}: {rows[name]['parameters']} parameters, {len(blob)} bytes", flush=True)
    med = time_interleaved(rts, ins, rounds=args.rounds)
    print(f"{'network':24s} {'params':>8s} {'bytes':>8s} {'ms/face':>8s} {'x ref':>6s}  "
          f"fits (<= {BUDGET_MS} ms, {BUDGET_BYTES} B)")
    print(f"{'reference ' + ref.name:24s} {'':>8s} {ref.stat().st_size:8d} {med['reference']:8.3f} {1.0:6.2f}")
    for k, r in rows.items():
        r["median_ms"] = round(med[k], 4)
        r["ratio_to_reference"] = round(med[k] / med["reference"], 3)
        r["fits"] = fits(med[k], r["bytes"])
        print(f"{k:24s} {r['parameters']:8d} {r['bytes']:8d} {med[k]:8.3f} {r['ratio_to_reference']:6.2f}  "
              f"{'yes' if r['fits'] else 'NO'}")
    if args.json:
        from djsmile.fsutil import atomic_write
        atomic_write(args.json, json.dumps({"reference": {"path": str(ref), "bytes": ref.stat().st_size,
                                                          "median_ms": med["reference"]}, "candidates": rows},
                                           indent=1).encode())
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
