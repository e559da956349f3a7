"""The analysis as a terminal table, a JSON file and one self-contained HTML page with inline SVG plots."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np

from sftselect.analysis.analyze import Analysis, Group
from sftselect.io.atomic import atomic_text, check_destination
from sftselect.io.write import write_json_file

COLORS = ("#444444", "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
BINS = 30
PLOT_WIDTH, PLOT_HEIGHT = 520, 220
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 48, 12, 12, 34


def format_number(value: float) -> str:
    """A number with three significant figures, or a dash when it is missing."""
    if value is None or not math.isfinite(value):
        return "–"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.2e}"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def summary_table(analysis: Analysis) -> Any:
    """A rich table: one row per metric, one `mean ± std` column per group (the pool first)."""
    from rich.table import Table

    table = Table(title="style metrics: mean ± standard deviation", title_justify="left")
    table.add_column("metric")
    summary = analysis.summary()
    for group in summary:
        table.add_column(f"{group['name']}\n(n={group['records']})", justify="right")
    for metric in analysis.descriptions:
        table.add_row(
            metric,
            *(f"{format_number(g['metrics'][metric]['mean'])} ± {format_number(g['metrics'][metric]['std'])}" for g in summary),
        )
    return table


def write_json(analysis: Analysis, dest: str | Path, overwrite: bool = False) -> Path:
    """Write the summary as JSON (atomically; an existing file only with overwrite) and return the path."""
    return write_json_file(analysis.to_json(), dest, overwrite)


def write_html(analysis: Analysis, dest: str | Path, title: str = "sftselect style analysis", overwrite: bool = False) -> Path:
    """Write the HTML report (atomically; an existing file only with overwrite) and return the path."""
    dest = Path(dest)
    check_destination(dest, None, overwrite)
    with atomic_text(dest) as handle:
        handle.write(render_html(analysis, title))
    return dest


def _plot_range(analysis: Analysis, metric: str) -> tuple[float, float]:
    finite = np.concatenate([analysis.group_values(group, metric) for group in analysis.groups])
    if finite.size == 0:
        return 0.0, 1.0
    # The 1st to 99th percentile keeps a few extreme records from squashing every histogram.
    low, high = np.percentile(finite, [1, 99]) if finite.size >= 50 else (finite.min(), finite.max())
    if high <= low:
        low, high = low - 0.5, high + 0.5
    return float(low), float(high)


def _densities(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    clipped = np.clip(values, edges[0], edges[-1])
    counts, _ = np.histogram(clipped, bins=edges)
    return counts / max(values.size, 1)


def histogram_svg(analysis: Analysis, metric: str) -> str:
    """An SVG of the metric's distribution in every group: share of records per bin, one outline per group."""
    low, high = _plot_range(analysis, metric)
    edges = np.linspace(low, high, BINS + 1)
    shares = {group.name: _densities(analysis.group_values(group, metric), edges) for group in analysis.groups}
    top = max((float(share.max()) for share in shares.values() if share.size), default=0.0) or 1.0
    inner_width = PLOT_WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    inner_height = PLOT_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM

    def x_of(value: float) -> float:
        return MARGIN_LEFT + (value - low) / (high - low) * inner_width

    def y_of(share: float) -> float:
        return MARGIN_TOP + inner_height - share / top * inner_height

    parts = [
        f'<svg class="plot" data-metric="{html.escape(metric)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}" viewBox="0 0 {PLOT_WIDTH} {PLOT_HEIGHT}" role="img">',
        f"<title>{html.escape(metric)}: share of records per bin</title>",
        f'<rect x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{inner_width}" height="{inner_height}" fill="#fafafa" stroke="#ccc"/>',
    ]
    for position, tick in enumerate(np.linspace(low, high, 5)):
        x = x_of(float(tick))
        anchor = "start" if position == 0 else "end" if position == 4 else "middle"
        parts.append(f'<line x1="{x:.1f}" y1="{MARGIN_TOP + inner_height}" x2="{x:.1f}" y2="{MARGIN_TOP + inner_height + 4}" stroke="#888"/>')
        parts.append(f'<text x="{x:.1f}" y="{PLOT_HEIGHT - MARGIN_BOTTOM + 18}" font-size="11" text-anchor="{anchor}">{format_number(float(tick))}</text>')
    for fraction in (0.0, 0.5, 1.0):
        y = y_of(top * fraction)
        parts.append(f'<text x="{MARGIN_LEFT - 4}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{top * fraction:.0%}</text>')
    for position, group in enumerate(analysis.groups):
        color = COLORS[position % len(COLORS)]
        share = shares[group.name]
        if not share.size or not analysis.group_values(group, metric).size:
            continue
        points = [f"{x_of(low):.1f},{y_of(0):.1f}"]
        for bin_index, value in enumerate(share):
            points.append(f"{x_of(edges[bin_index]):.1f},{y_of(value):.1f}")
            points.append(f"{x_of(edges[bin_index + 1]):.1f},{y_of(value):.1f}")
        points.append(f"{x_of(high):.1f},{y_of(0):.1f}")
        fill = "fill-opacity=\"0.12\"" if position == 0 else "fill-opacity=\"0\""
        parts.append(
            f'<polyline class="series" data-group="{html.escape(group.name)}" points="{" ".join(points)}" '
            f'fill="{color}" {fill} stroke="{color}" stroke-width="{2.2 if position == 0 else 1.6}"/>'
        )
        mean = float(analysis.group_values(group, metric).mean())
        if low <= mean <= high:
            x = x_of(mean)
            parts.append(
                f'<line class="mean" x1="{x:.1f}" y1="{MARGIN_TOP}" x2="{x:.1f}" y2="{MARGIN_TOP + inner_height}" '
                f'stroke="{color}" stroke-dasharray="4 3" stroke-width="1.2"/>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _legend(groups: list[Group]) -> str:
    items = []
    for position, group in enumerate(groups):
        color = COLORS[position % len(COLORS)]
        items.append(
            f'<span class="key"><span class="swatch" style="background:{color}"></span>'
            f"{html.escape(group.name)} (n={group.indices.size})</span>"
        )
    return '<div class="legend">' + "".join(items) + "</div>"


def _table_html(analysis: Analysis) -> str:
    summary = analysis.summary()
    head = "".join(f"<th>{html.escape(g['name'])}<br><small>n={g['records']}</small></th>" for g in summary)
    rows = []
    pool = summary[0]
    for metric, description in analysis.descriptions.items():
        cells = []
        for group in summary:
            stats = group["metrics"][metric]
            shift = ""
            pool_stats = pool["metrics"][metric]
            if group is not pool and math.isfinite(stats["mean"]) and math.isfinite(pool_stats["mean"]) and pool_stats["std"]:
                # Shift from the pool in pool standard deviations: how far a selection moves the style.
                delta = (stats["mean"] - pool_stats["mean"]) / pool_stats["std"]
                shift = f' <small class="{"up" if delta > 0 else "down"}">({delta:+.2f}σ)</small>'
            cells.append(f"<td>{format_number(stats['mean'])} ± {format_number(stats['std'])}{shift}</td>")
        rows.append(f'<tr><th title="{html.escape(description)}">{html.escape(metric)}</th>{"".join(cells)}</tr>')
    return f'<table class="summary"><thead><tr><th>metric</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
p.note{color:#666;font-size:13px;margin:2px 0}
table.summary{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums}
table.summary th,table.summary td{border-bottom:1px solid #e4e4e4;padding:4px 10px;text-align:right;white-space:nowrap}
table.summary th:first-child{text-align:left}
small.up{color:#b03030}small.down{color:#2050a0}
.legend{margin:10px 0 4px;font-size:13px}.key{margin-right:16px;white-space:nowrap}
.swatch{display:inline-block;width:12px;height:12px;margin-right:5px;vertical-align:-1px;border-radius:2px}
.plots{display:flex;flex-wrap:wrap;gap:14px}
figure{margin:0;border:1px solid #eee;padding:6px}
figcaption{font-size:13px;margin:0 0 4px}figcaption small{color:#666}
"""


def render_html(analysis: Analysis, title: str = "sftselect style analysis") -> str:
    """One self-contained HTML page: the summary table and a histogram per metric, pool against each group."""
    figures = []
    for metric, description in analysis.descriptions.items():
        figures.append(
            f'<figure id="metric-{html.escape(metric)}"><figcaption><b>{html.escape(metric)}</b> '
            f"<small>{html.escape(description)}</small></figcaption>{histogram_svg(analysis, metric)}</figure>"
        )
    notes = "".join(f'<p class="note">{html.escape(note)}</p>' for note in analysis.notes)
    pool = analysis.groups[0]
    source = f" of {html.escape(pool.source)}" if pool.source else ""
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f'<p class="note">Style metrics{source}: mean ± standard deviation per group; in brackets, the shift of '
        f"the mean from the pool's in pool standard deviations. Plots: share of records per bin (1st–99th "
        f"percentile of all values; outliers in the end bins), dashed lines at the means.</p>{notes}"
        f"<h2>Summary</h2>{_table_html(analysis)}"
        f"<h2>Distributions</h2>{_legend(analysis.groups)}"
        f'<div class="plots">{"".join(figures)}</div>'
        "</body></html>\n"
    )
