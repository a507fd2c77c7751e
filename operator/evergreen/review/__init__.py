"""Review reports: a monitor's decisions, drift, KPIs and data quality as one HTML page.

``evergreen backtest --report`` draws a replay; ``evergreen explain --report`` draws what a
monitor's status remembers. Drawing needs the ``report`` extra (matplotlib).
"""

from evergreen.review.history import MonitorHistory, from_backtest, from_status
from evergreen.review.page import render, write

__all__ = ["MonitorHistory", "from_backtest", "from_status", "render", "write"]
