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
        counts: IntArray = np.count_nonzero(self.known_bounds, axis=1)
        return counts


def align(baseline: HistogramSet, current: HistogramSet) -> AlignedHistograms:
    """Compare-ready per-bin counts of every series of either window.

    Series keys and bounds are the unions of both windows. A series missing from one window
    has zero counts there (no data, never "no drift"). Per series, only bounds known in both
    windows separate bins: at any other bound the cumulative count is carried forward from
    the previous known bound in both windows (from 0 before the first). A running maximum
    along the bounds repairs non-monotonic cumulative counts and negative counts become 0.
    """
    # Usually both windows hold the same series: then the union is either window's keys.
    if baseline.keys == current.keys:
        keys = baseline.keys
    else:
        keys = tuple(sorted(set(baseline.keys) | set(current.keys)))
    bounds = np.union1d(baseline.upper_bounds, current.upper_bounds)
    baseline_cumulative = _spread(baseline, keys, bounds)
    current_cumulative = _spread(current, keys, bounds)

    known = ~np.isnan(baseline_cumulative) & ~np.isnan(current_cumulative)
    baseline_cumulative = _repaired(baseline_cumulative, known)
    current_cumulative = _repaired(current_cumulative, known)
    return AlignedHistograms(
        keys=keys,
        upper_bounds=bounds,
        baseline=np.diff(baseline_cumulative, axis=1, prepend=0.0),
        current=np.diff(current_cumulative, axis=1, prepend=0.0),
        baseline_total=baseline_cumulative[:, -1].copy(),
        current_total=current_cumulative[:, -1].copy(),
        known_bounds=known,
    )


def _spread(histograms: HistogramSet, keys: tuple[SeriesKey, ...], bounds: FloatArray) -> FloatArray:
    """The window's cumulative counts on the union rows and bounds.

    Rows of series the window lacks are zero at every bound (it saw no traffic there); other
    cells the window lacks are NaN (the bound is unknown to it).
    """
    if histograms.keys == keys and histograms.upper_bounds.size == bounds.size:
        return np.array(histograms.cumulative)
    spread = np.zeros((len(keys), bounds.size))
    row_of = {key: row for row, key in enumerate(keys)}
    rows = np.fromiter(map(row_of.__getitem__, histograms.keys), dtype=np.intp, count=len(histograms.keys))
    columns = np.searchsorted(bounds, histograms.upper_bounds)
    spread[rows] = np.nan
    spread[np.ix_(rows, columns)] = histograms.cumulative
    return spread


def _repaired(cumulative: FloatArray, known: BoolArray) -> FloatArray:
    """Running maximum over the known bounds, carried forward over the unknown ones.

    Carrying the last known count forward and then taking the running maximum is the same
    as the running maximum of the known counts alone, starting from 0, which also clips
    negative counts.
    """
    floored = np.where(known, np.maximum(cumulative, 0.0), 0.0)
    return np.maximum.accumulate(floored, axis=1)
