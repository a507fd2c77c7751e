"""The report's figures, drawn by matplotlib into inline SVG (no network, no files beside it).

Every chart shares one x axis: evaluation number, labelled with its time. A backtest over a
recording has hours or days between its spans; on a time axis those spans would be slivers,
so long gaps are compressed and marked with a dotted line instead.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from evergreen.api.status import CheckState
from evergreen.errors import ReportError
from evergreen.review.history import CheckSeries, DriftSeries, MonitorHistory, Thresholds

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Decision actions from calm to urgent, with their colours (unknown actions go last, grey).
ACTION_COLOURS = {
    "NoAction": "#2e7d32",
    "Watch": "#f9a825",
    "Unknown": "#9e9e9e",
    "Retrain": "#1565c0",
    "HoldForDataQuality": "#ef6c00",
    "Escalate": "#c62828",
}
#: Check states from best to worst: a binned cell shows the worst state within it.
STATE_COLOURS = {
    CheckState.OK: "#a5d6a7",
    CheckState.NO_DATA: "#bdbdbd",
    CheckState.ERROR: "#6a1b9a",
    CheckState.BREACHED: "#e53935",
}
#: Above this many evaluations, heat maps show the worst of neighbouring evaluations per column
#: (a figure is about 1,000 pixels wide: a single bad evaluation must not vanish in resampling),
#: and per-evaluation markers are drawn as an embedded image rather than one SVG element each.
MAX_COLUMNS = 1000
#: Drift series drawn in a heat map; the rest never came near the warning threshold.
MAX_HEATMAP_ROWS = 30
WIDTH_INCHES = 12.0
#: Every figure's plot area spans the same fraction of the width, so time lines up down the page.
LEFT, RIGHT = 0.18, 0.88


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError as error:
        raise ReportError("HTML reports need matplotlib: pip install 'evergreen[report]'") from error
    return matplotlib


@contextmanager
def _style() -> Iterator[None]:
    matplotlib = _matplotlib()
    with matplotlib.rc_context(
        {
            # Text stays text (searchable, selectable, small); ids are stable between runs.
            "svg.fonttype": "none",
            "svg.hashsalt": "evergreen",
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    ):
        yield


def _figure(height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(WIDTH_INCHES, height))


def _grid(figure: Figure, rows: int, heights: Sequence[float] | None = None) -> Any:
    """Plot areas at the page-wide margins; 0.35 in above (titles) and 0.4 in below (times)."""
    height = figure.get_figheight()
    return figure.add_gridspec(
        rows,
        1,
        height_ratios=heights,
        left=LEFT,
        right=RIGHT,
        top=1 - 0.3 / height,
        bottom=0.4 / height,
        hspace=0.45 * rows / max(height, 1.0),
    )


def _svg(figure: Figure, label: str) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Title": label})
    text = buffer.getvalue()
    # Drop the XML prolog and DOCTYPE: the SVG is embedded in HTML.
    return text[text.index("<svg") :]


# --- the shared x axis --------------------------------------------------------------------


def gaps(times: Sequence[datetime]) -> list[int]:
    """Indices i where the time between evaluation i-1 and i is far longer than usual."""
    if len(times) < 3:
        return []
    steps = [later - earlier for earlier, later in itertools.pairwise(times)]
    usual = sorted(steps)[len(steps) // 2]
    return [i + 1 for i, step in enumerate(steps) if step > max(3 * usual, usual + timedelta(minutes=1))]


def _time_axis(axes: Axes, times: Sequence[datetime], *, labels: bool = True) -> None:
    count = len(times)
    axes.set_xlim(-0.5, count - 0.5)
    ticks = sorted({0, count - 1, *gaps(times)} | set(range(0, count, max(1, math.ceil(count / 8)))))
    # Keep ticks apart so their labels do not collide (about nine labels fit across).
    apart = max(1.0, count / 9)
    spaced: list[int] = []
    for tick in ticks:
        if spaced and tick - spaced[-1] < apart:
            if tick != count - 1:
                continue
            spaced.pop()  # the last evaluation's time matters more than its neighbour's
        spaced.append(tick)
    axes.set_xticks(spaced)
    if labels:
        axes.set_xticklabels([times[i].strftime("%m-%d %H:%M") for i in spaced], rotation=0)
    else:
        axes.set_xticklabels([])
    for gap in gaps(times):
        axes.axvline(gap - 0.5, color="#757575", linestyle=":", linewidth=1)


# --- decision timeline --------------------------------------------------------------------


def _index_at(times: Sequence[datetime], moment: datetime) -> int:
    """The first evaluation at or after ``moment``."""
    for index, at in enumerate(times):
        if at >= moment:
            return index
    return len(times)


def decision_timeline(history: MonitorHistory) -> str:
    """Each decision as a band on its action's row, labelled with its reason."""
    with _style():
        actions = [a for a in ACTION_COLOURS if any(p.action == a for p in history.periods)]
        actions += sorted({p.action for p in history.periods} - set(actions))
        rows = {action: i for i, action in enumerate(actions)}
        figure = _figure(0.45 * max(len(actions), 2) + 0.9)
        axes = figure.add_subplot(_grid(figure, 1)[0])
        times = history.times
        for period in history.periods:
            start = _index_at(times, period.start)
            end = _index_at(times, period.end) if period.end is not None else len(times)
            width = max(end - start, 1)
            colour = ACTION_COLOURS.get(period.action, "#9e9e9e")
            row = rows[period.action]
            axes.broken_barh(
                [(start - 0.5, width)], (row - 0.4, 0.8), facecolors=colour, edgecolors="white", linewidth=0.5
            )
            if width >= max(2, len(times) / 25):
                axes.text(
                    start - 0.4,
                    row,
                    period.reason,
                    va="center",
                    ha="left",
                    color="white",
                    fontsize=8,
                    clip_on=True,
                )
        unavailable = [i for i, at in enumerate(times) if at in history.unavailable]
        if unavailable:
            axes.scatter(
                unavailable, [-0.8] * len(unavailable), marker="|", color="#616161", label="no Prometheus"
            )
            axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        axes.set_yticks(range(len(actions)), actions)
        axes.set_ylim(-1.2 if unavailable else -0.6, len(actions) - 0.4)
        axes.invert_yaxis()
        _time_axis(axes, times)
        axes.set_title("Decisions (each band a decision held; its reason inside)", loc="left")
        return _svg(figure, "Decision timeline")


# --- drift heat map -----------------------------------------------------------------------


def _heat_rows(series: Sequence[DriftSeries]) -> tuple[list[DriftSeries], int]:
    ranked = sorted(series, key=lambda s: (-s.peak, s.feature, s.segment))
    return ranked[:MAX_HEATMAP_ROWS], max(len(ranked) - MAX_HEATMAP_ROWS, 0)


def _norm_and_colours(thresholds: Thresholds, peak: float) -> tuple[Any, Any]:
    from matplotlib.colors import BoundaryNorm, ListedColormap

    w, c = thresholds.warning, thresholds.critical
    top = max(peak, 2 * c) * 1.0001
    bounds = [0.0, w / 2, w, (w + c) / 2 if c > w else w * 1.0001, c, (c + top) / 2, top]
    colours = ListedColormap(
        ["#f1f8e9", "#c5e1a5", "#fff176", "#ffb74d", "#e57373", "#b71c1c"]
    ).with_extremes(bad="#eeeeee", over="#7f0000")
    return BoundaryNorm(bounds, colours.N), colours


def drift_heatmap(history: MonitorHistory) -> str:
    """Feature × segment rows over time, coloured by score; warning and critical on the scale."""
    import numpy as np

    with _style():
        signals = [s for s in ("feature", "prediction") if any(d.signal == s for d in history.drift)]
        if not signals:
            figure = _figure(1.0)
            figure.text(0.01, 0.5, "No drift signal in this history.", va="center")
            return _svg(figure, "Drift heat map")
        panels = []
        for signal in signals:
            rows, hidden = _heat_rows([d for d in history.drift if d.signal == signal])
            panels.append((signal, rows, hidden))
        heights = [max(len(rows), 1) * 0.17 + 0.2 for _, rows, _ in panels]
        figure = _figure(sum(heights) + 0.55 * len(panels) + 0.3)
        grid = _grid(figure, len(panels), heights)
        for row_index, (signal, rows, hidden) in enumerate(panels):
            axes = figure.add_subplot(grid[row_index])
            bar_axes = axes.inset_axes((1.01, 0.0, 0.012, 1.0))
            thresholds = history.thresholds.get(signal) or Thresholds("score", 0.1, 0.25)
            values = np.array(
                [[math.nan if s is None else s for s in series.scores] for series in rows], dtype=float
            )
            norm, colours = _norm_and_colours(thresholds, max((s.peak for s in rows), default=0.0))
            columns, (left, right) = _worst_per_column(values)
            image = axes.imshow(
                np.ma.masked_invalid(columns),
                aspect="auto",
                interpolation="nearest",
                cmap=colours,
                norm=norm,
                extent=(left, right, len(rows) - 0.5, -0.5),
            )
            axes.set_yticks(
                range(len(rows)),
                [f"{s.feature} [{s.segment}]" if s.segment != "*" else s.feature for s in rows],
                fontsize=7,
            )
            _time_axis(axes, history.times, labels=row_index == len(panels) - 1)
            title = f"{'Feature' if signal == 'feature' else 'Prediction'} drift ({thresholds.method})"
            if hidden:
                title += f": the {len(rows)} highest series; {hidden} more stayed lower"
            axes.set_title(title, loc="left")
            bar = figure.colorbar(image, cax=bar_axes, extend="max")
            bar.set_ticks([thresholds.warning, thresholds.critical])
            bar.set_ticklabels([f"warning {thresholds.warning:g}", f"critical {thresholds.critical:g}"])
            for level in (thresholds.warning, thresholds.critical):
                bar_axes.axhline(level, color="black", linewidth=1.2)
        return _svg(figure, "Drift heat map")


# --- KPIs and data-quality checks ---------------------------------------------------------


def _floats(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else v for v in values]


def _worst_per_column(values: Any) -> tuple[Any, tuple[float, float]]:
    """``values`` (rows × evaluations) binned to at most MAX_COLUMNS columns by their maximum
    (NaN only where a whole bin is NaN), and the x extent the image covers."""
    import numpy as np

    count = values.shape[1]
    extent = (-0.5, count - 0.5)
    if count <= MAX_COLUMNS:
        return values, extent
    starts = np.linspace(0, count, MAX_COLUMNS, endpoint=False).astype(int)
    return np.fmax.reduceat(values, starts, axis=1), extent


def _runs(indices: Sequence[int]) -> list[tuple[int, int]]:
    """Consecutive indices as (first, last) runs."""
    runs: list[tuple[int, int]] = []
    for index in indices:
        if runs and index == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], index)
        else:
            runs.append((index, index))
    return runs


def kpi_lines(history: MonitorHistory) -> str:
    """Each KPI's value over time against its bounds; breaches marked."""
    with _style():
        kpis = list(history.kpis)
        if not kpis:
            figure = _figure(1.0)
            figure.text(0.01, 0.5, "No KPI in this monitor.", va="center")
            return _svg(figure, "KPIs")
        figure = _figure(1.5 * len(kpis) + 0.6)
        grid = _grid(figure, len(kpis))
        axes_list = [figure.add_subplot(grid[i]) for i in range(len(kpis))]
        positions = list(range(len(history.times)))
        dense = len(positions) > MAX_COLUMNS
        for index, (axes, kpi) in enumerate(zip(axes_list, kpis, strict=True)):
            axes.plot(
                positions, _floats(kpi.values), marker=None if dense else ".", color="#1565c0", label="value"
            )
            for bound, label in ((kpi.minimum, "min"), (kpi.maximum, "max")):
                known = {b for b in bound if b is not None}
                if len(known) == 1 and None not in bound:
                    axes.axhline(known.pop(), color="#c62828", linestyle="--", label=label)
                elif known:
                    axes.step(
                        positions, _floats(bound), where="mid", color="#c62828", linestyle="--", label=label
                    )
            breached = [i for i, state in enumerate(kpi.states) if state is CheckState.BREACHED]
            axes.scatter(
                breached,
                [_value_or_bound(kpi, i) for i in breached],
                color="#c62828",
                s=12 if dense else 36,
                zorder=3,
                label="breached",
                rasterized=dense,
            )
            missing = [
                i for i, state in enumerate(kpi.states) if state in (CheckState.NO_DATA, CheckState.ERROR)
            ]
            for first, last in _runs(missing):
                axes.axvspan(first - 0.5, last + 0.5, color="#e0e0e0", zorder=0)
            axes.set_ylabel(kpi.name)
            axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=7)
            _time_axis(axes, history.times, labels=index == len(kpis) - 1)
        axes_list[0].set_title("KPIs against their bounds (grey: no data)", loc="left")
        return _svg(figure, "KPIs")


def _value_or_bound(check: CheckSeries, index: int) -> float:
    """Where a breach is drawn: at its value, else (breached for want of data) at its bound."""
    for value in (check.values[index], check.minimum[index], check.maximum[index]):
        if value is not None:
            return value
    return math.nan


def data_quality_strip(history: MonitorHistory) -> str:
    """One row per check, one cell per evaluation, coloured by its state."""
    import numpy as np
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    with _style():
        checks = list(history.data_quality)
        if not checks:
            figure = _figure(1.0)
            figure.text(0.01, 0.5, "No data-quality check in this monitor.", va="center")
            return _svg(figure, "Data-quality checks")
        states = list(STATE_COLOURS)
        codes = np.array(
            [[math.nan if s is None else states.index(s) for s in check.states] for check in checks],
            dtype=float,
        )
        colours = ListedColormap([STATE_COLOURS[s] for s in states]).with_extremes(bad="white")
        figure = _figure(0.25 * len(checks) + 0.9)
        axes = figure.add_subplot(_grid(figure, 1)[0])
        columns, (left, right) = _worst_per_column(codes)
        axes.imshow(
            np.ma.masked_invalid(columns),
            aspect="auto",
            interpolation="nearest",
            cmap=colours,
            vmin=-0.5,
            vmax=len(states) - 0.5,
            extent=(left, right, len(checks) - 0.5, -0.5),
        )
        axes.set_yticks(range(len(checks)), [c.name for c in checks])
        _time_axis(axes, history.times)
        axes.legend(
            handles=[Patch(color=STATE_COLOURS[s], label=s.value) for s in states],
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
            frameon=False,
        )
        axes.set_title("Data-quality checks", loc="left")
        return _svg(figure, "Data-quality checks")
