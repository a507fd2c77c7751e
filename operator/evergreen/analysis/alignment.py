"""Put a baseline and a current window on the same bins, series by series.

Two windows of one histogram family rarely agree perfectly: a bucket can exist in one window
only (a client library changed its layout, a sample was NaN), a series can exist in one window
only, and ``increase()`` extrapolation makes cumulative counts slightly non-monotonic. After
:func:`align` both windows hold non-negative per-bin counts over the same bins, and a bin
boundary survives only where both windows know it for that series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evergreen.analysis.histograms import HistogramSet
from evergreen.analysis.series import BoolArray, FloatArray, IntArray, SeriesKey
from evergreen.errors import AnalysisError


@dataclass(frozen=True, eq=False)
class AlignedHistograms:
    """Per-bin counts of both windows over one set of bins.

    Row ``i`` is series ``keys[i]``; column ``j`` is the bin ``(upper_bounds[j-1],
    upper_bounds[j]]`` (the first bin starts at -Inf). ``known_bounds[i, j]`` says whether
    ``upper_bounds[j]`` separates bins for that series: where it does not, the bin holds no
    mass in either window and its mass sits in the next known bin, which is the same as
    merging the two bins.
    """

    keys: tuple[SeriesKey, ...]
    upper_bounds: FloatArray
    baseline: FloatArray
    current: FloatArray
    baseline_total: FloatArray
    current_total: FloatArray
    known_bounds: BoolArray

    def __post_init__(self) -> None:
        shape = (len(self.keys), self.upper_bounds.size)
        for name in ("baseline", "current", "known_bounds"):
            if getattr(self, name).shape != shape:
                raise AnalysisError(f"{name} has shape {getattr(self, name).shape}, expected {shape}")
        for name in ("baseline_total", "current_total"):
            if getattr(self, name).shape != shape[:1]:
                raise AnalysisError(f"{name} has shape {getattr(self, name).shape}, expected {shape[:1]}")

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def bins(self) -> IntArray:
        """How many bins each series is compared over."""
        known = self.known_bounds
        if known.all():
            return np.full(known.shape[0], known.shape[1], dtype=np.intp)
        counts: IntArray = np.count_nonzero(known, axis=1)
        return counts


def align(baseline: HistogramSet, current: HistogramSet) -> AlignedHistograms:
    """Compare-ready per-bin counts of every series of either window.

    Series keys and bounds are the unions of both windows. A series missing from one window
    has zero counts there (no data, never "no drift"). Per series, only bounds known in both
    windows separate bins: at any other bound the cumulative count is carried forward from
    the previous known bound in both windows (from 0 before the first). A running maximum
    along the bounds repairs non-monotonic cumulative counts and negative counts become 0.
    """
    # Usually both windows hold the same series on the same bounds: then the union is either
    # window's keys and bounds, and nothing needs spreading.
    if baseline.keys == current.keys:
        keys = baseline.keys
    else:
        keys = tuple(sorted(set(baseline.keys) | set(current.keys)))
    if _same_bounds(baseline.upper_bounds, current.upper_bounds):
        bounds = baseline.upper_bounds
    else:
        bounds = np.union1d(baseline.upper_bounds, current.upper_bounds)
    # Both windows in one (bound, window, series) array: every step below is one numpy call
    # for both, and each step along the bounds works on contiguous rows.
    cumulative = np.empty((bounds.size, 2, len(keys)))
    _spread(baseline, keys, bounds, out=cumulative[:, 0])
    _spread(current, keys, bounds, out=cumulative[:, 1])

    np.maximum(cumulative, 0.0, out=cumulative)
    unknown = np.isnan(cumulative)
    if unknown.any():
        known = ~(unknown[:, 0] | unknown[:, 1])
        # Carrying the last known count forward and then taking the running maximum is the
        # same as the running maximum of the known counts alone, starting from 0.
        np.copyto(cumulative, 0.0, where=~known[:, np.newaxis])
        known_bounds = np.ascontiguousarray(known.T)
    else:
        known_bounds = np.ones((len(keys), bounds.size), dtype=bool)
    _running_maximum(cumulative)

    counts = np.empty_like(cumulative)
    counts[0] = cumulative[0]
    np.subtract(cumulative[1:], cumulative[:-1], out=counts[1:])
    # Back to one C-ordered (series, bin) array per window for the statistics.
    counts = np.ascontiguousarray(counts.transpose(1, 2, 0))
    totals = cumulative[-1].copy()
    return AlignedHistograms(
        keys=keys,
        upper_bounds=bounds,
        baseline=counts[0],
        current=counts[1],
        baseline_total=totals[0],
        current_total=totals[1],
        known_bounds=known_bounds,
    )


def _same_bounds(a: FloatArray, b: FloatArray) -> bool:
    return a.size == b.size and bool((a == b).all())


def _spread(
    histograms: HistogramSet, keys: tuple[SeriesKey, ...], bounds: FloatArray, out: FloatArray
) -> None:
    """Write the window's cumulative counts on the union rows and bounds into ``out``.

    ``out`` is ``(bound, series)``. Rows of series the window lacks are zero at every bound
    (it saw no traffic there); other cells the window lacks are NaN (the bound is unknown to
    it).
    """
    if histograms.keys == keys and histograms.upper_bounds.size == bounds.size:
        out[...] = histograms.cumulative.T
        return
    out.fill(0.0)
    row_of = {key: row for row, key in enumerate(keys)}
    rows = np.fromiter(map(row_of.__getitem__, histograms.keys), dtype=np.intp, count=len(histograms.keys))
    columns = np.searchsorted(bounds, histograms.upper_bounds)
    out[:, rows] = np.nan
    out[np.ix_(columns, rows)] = histograms.cumulative.T


def _running_maximum(cumulative: FloatArray) -> None:
    """The running maximum along the first axis, in place.

    One call per bound on contiguous rows: ``np.maximum.accumulate`` along a short axis costs
    several times more, and a maximum is exact in any order.
    """
    for row in range(1, cumulative.shape[0]):
        np.maximum(cumulative[row - 1], cumulative[row], out=cumulative[row])
