"""``monitoring/index.html``: every monitor run, newest first, with its drift scores over time.

Rebuilt from the runs' ``summary.json`` files each time, so it is never the only copy of
anything, and a run folder is never overwritten.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from vlclip.io import atomic_write_text, write_json

INDEX = "index.html"
HISTORY = "history.json"


def load_history(output_dir: Path) -> list[dict]:
    """Every run's summary, oldest first (run ids start with their UTC time)."""
    summaries = []
    for path in sorted(Path(output_dir).glob("*/summary.json")):
        try:
            summary = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        summary["folder"] = path.parent.name
        summaries.append(summary)
    return sorted(summaries, key=lambda s: s.get("created", s["folder"]))


COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def trend_svg(history: list[dict], width: int = 720, height: int = 220) -> str:
    """An inline SVG line chart of each signal's score per run (no plotting library, no
    JavaScript: the page opens offline and in a mail client)."""
    names = [signal["name"] for signal in history[-1]["signals"]] if history else []
    left, right, top, bottom = 40, 190, 10, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / max(1, len(history) - 1)
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        "font-family='sans-serif' font-size='11'>",
        f"<rect x='{left}' y='{top}' width='{plot_w}' height='{plot_h}' fill='none' "
        "stroke='#999'/>",
    ]
    for tick in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - tick)
        parts.append(f"<text x='{left - 6}' y='{y + 4:.1f}' text-anchor='end'>{tick:.1f}</text>")
    for index, name in enumerate(names):
        colour = COLOURS[index % len(COLOURS)]
        points = []
        for position, run in enumerate(history):
            score = next((s.get("score") for s in run["signals"] if s["name"] == name), None)
            if score is not None:
                y = top + plot_h * (1 - min(max(score, 0.0), 1.0))
                points.append(f"{left + position * step:.1f},{y:.1f}")
        if points:
            parts.append(f"<polyline fill='none' stroke='{colour}' stroke-width='2' "
                         f"points='{' '.join(points)}'/>")
            parts += [f"<circle cx='{p.split(',')[0]}' cy='{p.split(',')[1]}' r='3' "
                      f"fill='{colour}'/>" for p in points]
        legend_y = top + 14 * index + 8
        parts.append(f"<rect x='{width - right + 10}' y='{legend_y - 8}' width='10' height='10' "
                     f"fill='{colour}'/><text x='{width - right + 24}' y='{legend_y + 1}'>"
                     f"{html.escape(name)}</text>")
    parts.append(f"<text x='{left}' y='{height - 8}'>oldest run</text>")
    parts.append(f"<text x='{left + plot_w}' y='{height - 8}' text-anchor='end'>newest</text>")
    parts.append("</svg>")
    return "".join(parts)


def _row(run: dict) -> str:
    flags = "".join(
        f"<td class={'drift' if s['drift_detected'] else 'ok'}>{s['score']:.3f}</td>"
        if s.get("score") is not None else "<td>-</td>"
        for s in run["signals"]
    )
    status = "DRIFT" if run["drift_detected"] else "ok"
    folder = html.escape(run["folder"])
    return (
        f"<tr><td><a href='{folder}/report.html'>{folder}</a> "
        f"(<a href='{folder}/photos.html'>photos</a>)</td>"
        f"<td>{html.escape(str(run.get('catalog', '')))}</td>"
        f"<td>{html.escape(str(run.get('model_version')))}</td>"
        f"<td class={'drift' if run['drift_detected'] else 'ok'}>{status}</td>{flags}</tr>"
    )


def write_index(output_dir: Path) -> Path:
    """Rewrite ``index.html`` and ``history.json`` from the run folders."""
    output_dir = Path(output_dir)
    history = load_history(output_dir)
    write_json(output_dir / HISTORY, [
        {k: run.get(k) for k in ("folder", "created", "catalog", "model_version",
                                  "drift_detected", "drift_share")}
        | {"scores": {s["name"]: s["score"] for s in run["signals"]}}
        for run in history
    ])
    names = [s["name"] for s in history[-1]["signals"]] if history else []
    header = "".join(f"<th>{html.escape(name)}</th>" for name in names)
    rows = "\n".join(_row(run) for run in reversed(history))
    plot = trend_svg(history)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>vlclip drift monitor</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}}.drift{{background:#fdd}}
.ok{{background:#dfd}}</style></head><body>
<h1>vlclip drift monitor</h1>
<p>{len(history)} runs. Scores: share of drifted columns for tables; ROC AUC (model) or the
configured method's score for embeddings; normed Wasserstein distance for retrieval confidence.
Red: drift by the thresholds in <code>params.yaml</code> (<code>monitor:</code>).</p>
{plot if history else ""}
<table><tr><th>run (report)</th><th>catalog</th><th>model</th><th>status</th>{header}</tr>
{rows}
</table></body></html>
"""
    atomic_write_text(output_dir / INDEX, page)
    return output_dir / INDEX
