"""The report's "Conditions over time" section: each varying field's min, time-weighted mean and max, and how often
it changed, from a run's conditions.csv (HTML and Markdown)."""

from __future__ import annotations

import html
from typing import Any, Sequence

from analysis.load import Run
from analysis.metrics import condition_stats, run_end_s

__all__ = ["CONDITIONS_HEADING", "format_condition", "conditions_html", "conditions_markdown"]


CONDITIONS_HEADING = "Conditions over time"
_CONDITION_COLUMNS = ("entity", "field", "changes", "min", "mean (time-weighted)", "max")
_MAX_CONDITION_ROWS = 60  # a fleet of thousands of varying clients: the file has them all


def format_condition(field: str, value: float) -> str:
    """A conditions.csv value in its unit: rates in decimal bit/s units, latency in s, speed as a factor."""
    if field.endswith("_bps"):
        for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
            if abs(value) >= scale:
                return f"{value / scale:.4g} {unit}"
        return f"{value:.4g} bit/s"
    if field.endswith("_s"):
        return f"{value:.4g} s"
    return f"{value:.4g}×"


def _conditions_lines(run: Run) -> tuple[str, list[dict[str, Any]]] | None:
    """The section's sentence and rows, None without a conditions.csv."""
    stats = condition_stats(run)
    if not stats:
        return None
    entities = list(dict.fromkeys(r["entity"] for r in stats))
    shown = ", ".join(entities[:10]) + (f" and {len(entities) - 10} more" if len(entities) > 10 else "")
    text = (
        f"From conditions.csv: {len(entities)} entit{'y' if len(entities) == 1 else 'ies'} with conditions that "
        f"vary ({shown}); "
        f"each field's min, time-weighted mean and max over the run (0 to {run_end_s(run):,.1f} s of simulated "
        "time) and how many times it changed."
    )
    return text, stats


def conditions_html(run: Run, slug: str) -> str:
    """The section of one run in the HTML report (empty without a conditions.csv); `slug` names its anchor."""
    got = _conditions_lines(run)
    if got is None:
        return ""
    text, stats = got
    head = "".join(f"<th>{h}</th>" for h in _CONDITION_COLUMNS)
    body = []
    for r in stats[:_MAX_CONDITION_ROWS]:
        cells = [
            f"<td>{html.escape(r['entity'])}</td>",
            f"<td>{html.escape(r['field'])}</td>",
            f"<td>{r['changes']:,}</td>",
        ]
        cells += [
            f'<td data-key="{k}" data-value="{r[k]!r}">{html.escape(format_condition(r["field"], r[k]))}</td>'
            for k in ("min", "mean", "max")
        ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = (
        f"<p>… and {len(stats) - _MAX_CONDITION_ROWS:,} more rows: see conditions.csv.</p>"
        if len(stats) > _MAX_CONDITION_ROWS
        else ""
    )
    return (
        f'<h3 id="conditions-{slug}">{CONDITIONS_HEADING}</h3><p>{html.escape(text)}</p>'
        f'<table class="conditions" data-run="{html.escape(run.label)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>{more}"
    )


def conditions_markdown(runs: Sequence[Run]) -> list[str]:
    """The sections of the runs with a conditions.csv in the Markdown summary."""
    lines: list[str] = []
    for run in runs:
        got = _conditions_lines(run)
        if got is None:
            continue
        text, stats = got
        lines += [
            "",
            f"## {CONDITIONS_HEADING}: {run.label}",
            "",
            text,
            "",
            "| " + " | ".join(_CONDITION_COLUMNS) + " |",
            "|" + "---|" * len(_CONDITION_COLUMNS),
        ]
        for r in stats[:_MAX_CONDITION_ROWS]:
            cells = [
                r["entity"].replace("|", "\\|"),
                r["field"],
                f"{r['changes']:,}",
                *(format_condition(r["field"], r[k]) for k in ("min", "mean", "max")),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        if len(stats) > _MAX_CONDITION_ROWS:
            lines += ["", f"… and {len(stats) - _MAX_CONDITION_ROWS:,} more rows: see conditions.csv."]
    return lines
