"""Where a bin's mass sits on the value axis, for distances between binned distributions."""

from __future__ import annotations

import math

import numpy as np

from evergreen.analysis.series import BoolArray, FloatArray


def representative_points(upper_bounds: FloatArray, known_bounds: BoolArray | None = None) -> FloatArray:
    """Where each bin's mass is placed for Wasserstein: shape ``(N, B)`` (``(1, B)`` if no mask).

    A bin ``(l, u]`` between two known bounds sits at its midpoint; the first bin ``(-Inf, u]``
    at ``u``; the +Inf bin at the last finite known bound ``l``; a lone ``(-Inf, +Inf]`` bin at
    0. A column whose bound is not known holds no mass: it gets the point of the last known
    column before it (of the first known column if none), so no row's points ever decrease.
    """
    bounds = np.asarray(upper_bounds, dtype=np.float64)
    known = np.ones((1, bounds.size), dtype=bool) if known_bounds is None else known_bounds
    columns = np.arange(bounds.size)
    last_known = np.maximum.accumulate(np.where(known, columns, -1), axis=1)
    previous = np.concatenate([np.full((known.shape[0], 1), -1), last_known[:, :-1]], axis=1)
    lower = np.where(previous >= 0, bounds[np.maximum(previous, 0)], -math.inf)
    upper = np.broadcast_to(bounds, lower.shape)
    # Pick finite ends before averaging so no infinity is ever added.
    low = np.where(np.isfinite(lower), lower, np.where(np.isfinite(upper), upper, 0.0))
    high = np.where(np.isfinite(upper), upper, low)
    points = (low + high) / 2
    # Columns before the first known one borrow its point (any point will do: no mass).
    first_known = np.argmax(known, axis=1)[:, np.newaxis]
    source = np.where(last_known >= 0, last_known, first_known)
    return np.take_along_axis(points, source, axis=1)
