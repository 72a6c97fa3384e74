"""Plotly charts for the report pages, rendered to HTML that works offline.

A page carries plotly.js inline once and one small script per chart (see `Charts`). Every
chart plots aggregates only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

import plotly.graph_objects as go
import plotly.io as pio

_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}
COLORS = {
    "lightgbm": "#1565c0",
    "logistic": "#ef6c00",
    "base_rate": "#9e9e9e",
    "train": "#6a1b9a",
    "cv": "#2e7d32",
    "new": "#c62828",
    "backtest": "#1565c0",
    "logistic_backtest": "#ef6c00",
    "base_rate_backtest": "#9e9e9e",
}


@dataclass(frozen=True)
class Chart:
    """A chart on a page: the element it draws into and the one inline script that draws it."""

    id: str
    height: int
    script: str


class Charts:
    """The charts of one page: plotly.js once (`lib`), then one script per chart.

    Figures go to the page as plotly's escaped JSON inside scripts this class writes, so every
    script on a page is known here and can be allowed by hash (`scripts`)."""

    def __init__(self) -> None:
        self._charts: list[Chart] = []

    @property
    def used(self) -> bool:
        return bool(self._charts)

    @property
    def lib(self) -> str:
        return _plotlyjs()

    @property
    def scripts(self) -> list[str]:
        """Every inline script the page will carry, for its Content-Security-Policy."""
        return ([self.lib] if self._charts else []) + [c.script for c in self._charts]

    def add(self, fig: go.Figure, height: int = 380) -> Chart:
        fig.update_layout(
            height=height,
            margin={"l": 60, "r": 20, "t": 50, "b": 50},
            template="plotly_white",
            font={"family": "system-ui, sans-serif", "size": 13},
        )
        chart_id = f"chart-{len(self._charts) + 1}"
        spec = pio.to_json(fig, validate=False)  # '<', '>' and '/' escaped by plotly
        script = (
            f"(function(){{var f={spec};Plotly.newPlot({json.dumps(chart_id)},f.data,f.layout,"
            f"{json.dumps(_CONFIG)});}})();"
        )
        chart = Chart(chart_id, height, script)
        self._charts.append(chart)
        return chart


@cache
def _plotlyjs() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def calibration(curve: list[dict], reference: list[dict] | None = None, title: str = "") -> go.Figure:
    """Observed at-risk rate (with its interval) against mean predicted risk, per bin."""
    fig = go.Figure()
    top = max([c["observed_high"] for c in curve] + [c["mean_predicted"] for c in curve] + [0.05])
    top = min(1.0, top * 1.1)
    fig.add_trace(
        go.Scatter(
            x=[0, top], y=[0, top], mode="lines", name="perfectly calibrated", line={"dash": "dot", "color": "#9e9e9e"}
        )
    )
    if reference:
        fig.add_trace(
            go.Scatter(
                x=[c["mean_predicted"] for c in reference],
                y=[c["observed"] for c in reference],
                mode="lines+markers",
                name="training cohorts (out of fold)",
                line={"color": COLORS["base_rate"]},
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[c["mean_predicted"] for c in curve],
            y=[c["observed"] for c in curve],
            mode="lines+markers",
            name="this cohort (95% interval)",
            line={"color": COLORS["lightgbm"]},
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [c["observed_high"] - c["observed"] for c in curve],
                "arrayminus": [c["observed"] - c["observed_low"] for c in curve],
            },
        )
    )
    fig.update_layout(
        title=title,
        xaxis_title="predicted risk (average of the group)",
        yaxis_title="share who actually struggled",
        xaxis_range=[0, top],
        yaxis_range=[0, top],
        xaxis_tickformat=".0%",
        yaxis_tickformat=".0%",
    )
    return fig


def promise_vs_real(rows: list[dict], title: str = "") -> go.Figure:
    """One panel per metric: what validation promised and what the cohort got (with its interval)."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(rows), subplot_titles=[r["label"] for r in rows])
    for i, r in enumerate(rows, start=1):
        fig.add_trace(
            go.Bar(
                x=["promised"],
                y=[r["promised"]],
                marker_color=COLORS["base_rate"],
                showlegend=False,
                hovertemplate="promised %{y:.3f}<extra></extra>",
            ),
            row=1,
            col=i,
        )
        fig.add_trace(
            go.Bar(
                x=["real"],
                y=[r["value"]],
                marker_color=COLORS["new"] if r.get("worse") else COLORS["lightgbm"],
                showlegend=False,
                hovertemplate="real %{y:.3f}<extra></extra>",
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [r["high"] - r["value"]],
                    "arrayminus": [r["value"] - r["low"]],
                },
            ),
            row=1,
            col=i,
        )
    fig.update_layout(title=title, bargap=0.35)
    return fig


def by_cohort(rows: list[dict], series: dict[str, str], title: str, yaxis: str = "ROC AUC") -> go.Figure:
    """Lines over cohorts: one per key of `series` ({key: legend label}); missing values leave gaps."""
    fig = go.Figure()
    x = [r["cohort"] for r in rows]
    for key, label in series.items():
        y = [r.get(key) for r in rows]
        if all(v is None for v in y):
            continue
        fig.add_trace(
            go.Scatter(x=x, y=y, mode="lines+markers", name=label, connectgaps=False, line={"color": COLORS.get(key)})
        )
    fig.update_layout(title=title, xaxis_title="cohort", yaxis_title=yaxis, xaxis_type="category")
    return fig


def learning_curve(points: list[dict], title: str) -> go.Figure:
    """Validation AUC against the number of cohorts the model was trained on."""
    fig = go.Figure()
    for key, label in (("lightgbm", "the model"), ("logistic", "simple baseline (logistic)")):
        pts = [p for p in points if p.get(key) is not None]
        fig.add_trace(
            go.Scatter(
                x=[p["n_cohorts"] for p in pts],
                y=[p[key] for p in pts],
                mode="lines+markers",
                name=label,
                text=[p["cohort"] for p in pts],
                hovertemplate="trained on %{x} cohort(s), tested on %{text}: %{y:.3f}<extra></extra>",
                line={"color": COLORS[key]},
            )
        )
    new = [p for p in points if p.get("new") is not None]
    if new:
        fig.add_trace(
            go.Scatter(
                x=[p["n_cohorts"] for p in new],
                y=[p["new"] for p in new],
                mode="markers",
                name="new cohort (real outcomes)",
                marker={"size": 13, "color": COLORS["new"], "symbol": "star"},
                text=[p["cohort"] for p in new],
                hovertemplate="trained on %{x} cohorts, tested on %{text}: %{y:.3f}<extra></extra>",
            )
        )
    fig.update_layout(
        title=title,
        xaxis_title="number of past cohorts the model was trained on",
        yaxis_title="ROC AUC on the next cohort",
        xaxis_dtick=1,
    )
    return fig


def groups(rows: list[dict], column: str) -> go.Figure:
    """Per group: at-risk rate, mean predicted risk, share flagged, TPR and FPR side by side."""
    fig = go.Figure()
    names = [r["group"] for r in rows]
    for key, label, color in (
        ("at_risk_rate", "actually struggled", "#6d4c41"),
        ("mean_predicted", "predicted risk (average)", "#90a4ae"),
        ("share_flagged", "flagged high risk", "#1565c0"),
        ("tpr", "of those who struggled: flagged", "#2e7d32"),
        ("fpr", "of those who did fine: flagged", "#ef6c00"),
    ):
        fig.add_trace(
            go.Bar(
                x=names,
                y=[r[key] for r in rows],
                name=label,
                marker_color=color,
                hovertemplate="%{x}: %{y:.1%}<extra>" + label + "</extra>",
            )
        )
    fig.update_layout(title=column, barmode="group", yaxis_tickformat=".0%", xaxis_type="category")
    return fig
