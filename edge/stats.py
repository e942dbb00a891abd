"""Summary figures of samples (percentiles, mean), rounded: written once for bench, calibration and convert."""

from __future__ import annotations

import numpy as np


def percentiles(values, qs, *, mean: bool = False, ndigits: int = 4) -> dict:
    """``{"p<q>": figure}`` for each ``q`` of ``qs`` (and ``"mean"`` when asked), rounded to ``ndigits``.

    The figures are ``None`` when there are no values. ``np.percentile``'s linear interpolation.
    """
    keys = [f"p{q:g}" for q in qs] + (["mean"] if mean else [])
    a = np.asarray(list(values), np.float64)
    if a.size == 0:
        return dict.fromkeys(keys)
    figures = [float(v) for v in np.percentile(a, list(qs))] + ([float(a.mean())] if mean else [])
    return {k: round(v, ndigits) for k, v in zip(keys, figures)}
