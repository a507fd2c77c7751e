"""Bucket layout changes: an exporter's ``le`` boundaries changed, the values did not.

Two windows with different layouts are compared on their common support: :func:`align` keeps
only the bounds both windows know, so a pure old layout against a pure new one is compared
on the edges they share. A window that spans the change holds *both* layouts at once: each
``le`` series counts only the observations exported with its layout, so the cumulative counts
of the window do not belong to one population and no comparison means anything. Such a
window shows itself by counts that fall along the bounds far beyond what ``increase()``
extrapolation does; the series is then not judged until the window holds one layout again.

Either way the change is reported for what it is (a layout change), never as drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evergreen.analysis.histograms import HistogramSet
from evergreen.analysis.series import FloatArray, SeriesKey

#: A cumulative count this far (as a share of the window's total) below the running maximum
#: of the counts before it means the window mixes two layouts. ``increase()`` extrapolation
#: makes counts dip by a fraction of a percent at most.
MIXED_DROP = 0.05

__all__ = ["MIXED_DROP", "LayoutChange", "layout_changes"]


@dataclass(frozen=True)
class LayoutChange:
    """A series whose bucket bounds differ between two windows."""

    key: SeriesKey
    #: Finite bounds each window knows, and how many they share.
    reference_bounds: int
    current_bounds: int
    shared: int
    #: One of the windows holds both layouts: the series cannot be compared now.
    mixed: bool

    def describe(self) -> str:
        if self.mixed:
            return (
                "bucket layout changed within the compared windows: not judged until a window "
                "holds one layout"
            )
        return (
            f"bucket layout changed ({self.reference_bounds} -> {self.current_bounds} finite bounds): "
            f"compared on the {self.shared} bounds both layouts share"
        )


def _mixed(row: FloatArray) -> bool:
    counts = row[~np.isnan(row)]
    if counts.size < 2:
        return False
    peak = np.maximum.accumulate(counts)
    total = max(float(peak[-1]), 1e-12)
    return bool(np.max(peak - counts) > MIXED_DROP * total)


def layout_changes(reference: HistogramSet, current: HistogramSet) -> dict[SeriesKey, LayoutChange]:
    """Series of both windows whose finite bucket bounds differ, by key."""
    if (
        reference.keys == current.keys
        and reference.upper_bounds.shape == current.upper_bounds.shape
        and bool((reference.upper_bounds == current.upper_bounds).all())
        and np.array_equal(np.isnan(reference.cumulative), np.isnan(current.cumulative))
    ):
        return {}  # the usual case, in a few array operations: one layout everywhere
    rows = {key: i for i, key in enumerate(reference.keys)}
    changes: dict[SeriesKey, LayoutChange] = {}
    for j, key in enumerate(current.keys):
        i = rows.get(key)
        if i is None:
            continue
        before = _bounds(reference, i)
        after = _bounds(current, j)
        if before == after:
            continue
        mixed = _mixed(reference.cumulative[i]) or _mixed(current.cumulative[j])
        changes[key] = LayoutChange(key, len(before), len(after), len(before & after), mixed)
    return changes


def _bounds(histograms: HistogramSet, row: int) -> frozenset[float]:
    bounds = histograms.upper_bounds
    known = ~np.isnan(histograms.cumulative[row]) & np.isfinite(bounds)
    return frozenset(bounds[known].tolist())
