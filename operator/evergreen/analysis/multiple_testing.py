"""False discovery rate control over the many tests of one evaluation.

An evaluation tests every feature x segment at once: with 200 series and a 1 % significance
level, two would "drift" every time by chance alone. The Benjamini-Hochberg procedure keeps
the expected share of false alarms among the series it flags at ``q`` instead, however many
series there are. Series without a p-value (no data, NaN) are not tests: they are neither
flagged nor counted.
"""

from __future__ import annotations

import math

import numpy as np

from evergreen.analysis.series import BoolArray, FloatArray, IntArray
from evergreen.errors import AnalysisError

__all__ = ["benjamini_hochberg", "fdr_adjusted"]


def benjamini_hochberg(p_values: FloatArray, q: float, *, arbitrary_dependence: bool = False) -> BoolArray:
    """Which hypotheses are discoveries at false discovery rate ``q``; same shape as the input.

    Step-up procedure over the ``m`` non-NaN p-values sorted ascending: find the largest
    ``k`` with ``p_(k) <= k * q / m`` and reject the ``k`` smallest. NaN p-values are never
    discoveries and do not count in ``m``. All values form one family, whatever the shape.

    The guarantee holds for independent or positively dependent tests, which covers a
    segment and the whole population it belongs to. ``arbitrary_dependence=True`` applies the
    Benjamini-Yekutieli correction (``q`` divided by ``1 + 1/2 + ... + 1/m``), valid under
    any dependence and more conservative.
    """
    if not 0 < q <= 1:
        raise AnalysisError(f"false discovery rate must be within (0, 1], got {q}")
    p, tested, values = _tested(p_values)
    discoveries = np.zeros(p.size, dtype=bool)
    m = values.size
    if m:
        order = np.argsort(values, kind="stable")
        ranks = np.arange(1, m + 1)
        thresholds = ranks * (q / (m * _dependence_factor(m, arbitrary_dependence)))
        passing = np.flatnonzero(values[order] <= thresholds)
        if passing.size:
            discoveries[tested[order[: passing[-1] + 1]]] = True
    result: BoolArray = discoveries.reshape(p.shape)
    return result


def fdr_adjusted(p_values: FloatArray, *, arbitrary_dependence: bool = False) -> FloatArray:
    """Benjamini-Hochberg adjusted p-values (q-values); NaN stays NaN.

    A hypothesis is a discovery at rate ``q`` exactly when its adjusted p-value is at most
    ``q``, so one array serves every threshold and can be reported as evidence. Matches
    ``scipy.stats.false_discovery_control`` (``method="by"`` with ``arbitrary_dependence``)
    on the non-NaN values.
    """
    p, tested, values = _tested(p_values)
    m = values.size
    adjusted = np.full(p.size, math.nan)
    if m:
        order = np.argsort(values, kind="stable")
        ranks = np.arange(1, m + 1)
        scaled = values[order] * (m * _dependence_factor(m, arbitrary_dependence)) / ranks
        # The step-up rule: each adjusted value is the smallest scaled value at its rank or above.
        monotone = np.minimum.accumulate(scaled[::-1])[::-1]
        adjusted[tested[order]] = np.minimum(monotone, 1.0)
    result: FloatArray = adjusted.reshape(p.shape)
    return result


def _tested(p_values: FloatArray) -> tuple[FloatArray, IntArray, FloatArray]:
    """The p-values as an array, the flat positions of the non-NaN ones, and those values."""
    p = np.asarray(p_values, dtype=np.float64)
    flat = p.ravel()
    tested: IntArray = np.flatnonzero(~np.isnan(flat))
    values = flat[tested]
    if not np.all((values >= 0) & (values <= 1)):
        raise AnalysisError("p-values must be within [0, 1], or NaN where there was no test")
    return p, tested, values


def _dependence_factor(m: int, arbitrary_dependence: bool) -> float:
    """Benjamini-Yekutieli's ``1 + 1/2 + ... + 1/m`` under arbitrary dependence, else 1."""
    return float(np.sum(1.0 / np.arange(1, m + 1))) if arbitrary_dependence else 1.0
