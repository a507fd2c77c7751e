"""One self-contained HTML page: the figures inline as SVG, the tables as HTML, no scripts,
no fonts, images or styles fetched from anywhere, so it opens offline and attaches to a review."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from evergreen.api.status import CheckState
from evergreen.review import charts
from evergreen.review.history import CheckSeries, MonitorHistory
from evergreen.whatif import Comparison
from evergreen.whatif.comparison import HEADER, rows

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 1200px; color: #212121; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #e0e0e0; padding-bottom: 0.2rem; }
.subtitle, .note, footer { color: #616161; }
figure { margin: 0.5rem 0; }
figure svg { width: 100%; height: auto; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 0.5rem 0; }
th, td { text-align: left; padding: 0.25rem 0.75rem; border-bottom: 1px solid #eeeeee; vertical-align: top; }
th { background: #fafafa; }
.action { font-weight: 600; white-space: nowrap; }
.when { white-space: nowrap; }
.state-Breached { color: #c62828; font-weight: 600; }
.state-NoData, .state-Error { color: #757575; }
"""


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)


def _stamp(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "(still in force)"


#: A table cell: its text, or its text and a CSS class.
Cell = str | tuple[str, str]


def _cell(cell: Cell) -> str:
    if isinstance(cell, tuple):
        text, css = cell
        return f'<td class="{_text(css)}">{_text(text)}</td>'
    return f"<td>{_text(cell)}</td>"


def _table(table_id: str, header: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    head = "".join(f"<th>{_text(h)}</th>" for h in header)
    thead = f"<thead><tr>{head}</tr></thead>" if header else ""
    body = "".join("<tr>" + "".join(_cell(cell) for cell in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}">{thead}<tbody>{body}</tbody></table>'


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _last_known(check: CheckSeries) -> tuple[str, str, str, str]:
    for state, value, low, high in zip(
        reversed(check.states),
        reversed(check.values),
        reversed(check.minimum),
        reversed(check.maximum),
        strict=True,
    ):
        if state is not None:
            return state.value, _number(value), _number(low), _number(high)
    return "-", "-", "-", "-"


def _checks_table(table_id: str, checks: Sequence[CheckSeries]) -> str:
    rows: list[list[Cell]] = []
    for check in checks:
        state, value, low, high = _last_known(check)
        breached = sum(1 for s in check.states if s is CheckState.BREACHED)
        rows.append([check.name, (state, f"state-{state}"), value, low, high, str(breached)])
    return _table(table_id, ["Name", "Last state", "Last value", "Min", "Max", "Evaluations breached"], rows)


def _figure(figure_id: str, caption: str, svg: str) -> str:
    return f'<figure id="{figure_id}">{svg}<figcaption class="note">{_text(caption)}</figcaption></figure>'


def _comparison(comparison: Comparison | None) -> list[str]:
    """The what-if table, with the assumption it rests on printed beside it."""
    if comparison is None:
        return []
    table = [list[Cell](row) for row in rows(comparison)]
    return [
        "<h2>What if: retraining policies over this history</h2>",
        _table("whatif", HEADER, table),
        '<p class="note">KPI outside: hours with at least one KPI series (measured or estimated) outside '
        "its bounds; blocked: evaluations a wanted run was stopped by a guardrail. As recorded (no run): "
        f"{comparison.recorded_outside.total_seconds() / 3600:.1f} h outside, {comparison.incidents} data "
        "incident(s).</p>",
        *(f'<p class="note">{_text(note)}</p>' for note in comparison.notes),
    ]


def render(history: MonitorHistory, *, generated: datetime) -> str:
    """The report as one HTML document."""
    periods: list[list[Cell]] = [
        [(_stamp(p.start), "when"), (_stamp(p.end), "when"), (p.action, "action"), p.reason, p.message]
        for p in history.periods
    ]
    sections = [
        f"<h1>{_text(history.title)}</h1>",
        f'<p class="subtitle">{_text(history.subtitle)}</p>',
        *(f'<p class="note">{_text(note)}</p>' for note in history.notes),
        "<h2>Summary</h2>",
        _table("summary", [], [list(row) for row in history.summary]),
        "<h2>Decisions</h2>",
        _figure(
            "decision-timeline",
            "Dotted lines mark gaps between evaluations (compressed).",
            charts.decision_timeline(history),
        ),
        _table("decisions", ["From", "Until", "Action", "Reason", "Message"], periods),
        "<h2>Drift</h2>",
        _figure(
            "drift-heatmap",
            "Each row a feature [segment]; grey: not compared (no traffic, too few samples) or not recorded.",
            charts.drift_heatmap(history),
        ),
        "<h2>KPIs</h2>",
        _figure("kpi-lines", "Dashed: the KPI's bounds; red dots: breached.", charts.kpi_lines(history)),
        _checks_table("kpis", history.kpis),
        "<h2>Data quality</h2>",
        _figure(
            "data-quality", "One row per check, one cell per evaluation.", charts.data_quality_strip(history)
        ),
        _checks_table("data-quality-checks", history.data_quality),
        *_comparison(history.comparison),
        f"<footer><p>Generated by Evergreen at {_text(_stamp(generated))}.</p></footer>",
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_text(history.title)}</title>"
        f"<style>{_STYLE}</style></head>\n<body>\n" + "\n".join(sections) + "\n</body></html>\n"
    )


def write(history: MonitorHistory, path: Path, *, generated: datetime) -> None:
    """Write the report to ``path`` (its folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(history, generated=generated), encoding="utf-8")
