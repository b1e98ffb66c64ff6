"""An HTML report of a run folder: the results table, and plots of the records against the
swept parameters, in one self-contained `report.html` (plots embedded as PNG).

Per notebook: its runs as a table, then every numeric record against every swept parameter,
one line per combination of the other swept parameters.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import pandas as pd
from matplotlib.figure import Figure

from qnb import runner, sweep

REPORT = "report.html"
MAX_LINES = 8  # more combinations than this are drawn as points without a legend
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; margin: 1em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
.failed { color: #b00020; }
figure { display: inline-block; margin: 0.5em; }
"""


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _show(value) -> str:
    return value if isinstance(value, str) else repr(value)


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def plot(rows: list[dict], x: str, y: str, others: list[str]) -> Figure:
    """Record `y` against parameter `x`, one line per combination of the `others`."""
    fig = Figure(figsize=(5, 3.4))
    ax = fig.subplots()
    values = list(dict.fromkeys(_show(r[x]) for r in rows))
    numeric = all(_is_number(r[x]) for r in rows)
    position = (lambda v: v) if numeric else (lambda v: values.index(_show(v)))
    groups: dict[str, list[dict]] = {}
    for row in rows:
        label = ", ".join(f"{o}={_show(row[o])}" for o in others)
        groups.setdefault(label, []).append(row)
    for label, group in groups.items():
        points = sorted((position(r[x]), r[y]) for r in group if _is_number(r[y]))
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        if len(groups) > MAX_LINES:
            ax.scatter(xs, ys, s=14, color="C0")
        else:
            ax.plot(xs, ys, marker="o", label=label or None)
    if not numeric:
        ax.set_xticks(range(len(values)), values)
    elif len(values) <= 12:
        ax.set_xticks(sorted({r[x] for r in rows}))
    if 1 < len(groups) <= MAX_LINES:
        ax.legend(fontsize="small")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"{y} vs {x}")
    ax.grid(alpha=0.3)
    return fig


def _figures(rows: list[dict], params: list[str], records: list[str]) -> list[str]:
    """Base64 PNGs: each varying numeric record against each swept parameter (ok runs)."""
    ok = [r for r in rows if r["status"] == "ok"]
    swept = [p for p in params if len({_show(r[p]) for r in ok}) > 1]
    numeric = [  # numeric records that vary: a constant needs no plot
        k
        for k in records
        if all(r[k] == "" or _is_number(r[k]) for r in ok)
        and len({r[k] for r in ok if _is_number(r[k])}) > 1
    ]
    images = []
    for y in numeric:
        for x in swept:
            fig = plot(ok, x, y, [p for p in swept if p != x])
            images.append(_png(fig))
    return images


def _table(rows: list[dict]) -> str:
    """An HTML table of `rows`, without columns that are empty in all of them."""
    frame = pd.DataFrame([{k: "" if v is None else v for k, v in r.items()} for r in rows])
    frame = frame.loc[:, [c for c in frame if (frame[c] != "").any()]]
    frame = frame.map(lambda v: html.escape(v) if isinstance(v, str) else v)
    frame["run"] = [f'<a href="{quote(r["run"])}.ipynb">{html.escape(r["run"])}</a>' for r in rows]
    if "status" in frame:
        frame["status"] = [
            f'<span class="failed">{s}</span>' if s != "ok" else s for s in frame["status"]
        ]
    return frame.to_html(index=False, escape=False, na_rep="", border=0)


def render(table: sweep.Table, title: str) -> str:
    """The report page for `table`."""
    failed = [r for r in table.rows if r["status"] != "ok"]
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(table.rows)} runs: {len(table.rows) - len(failed)} ok, {len(failed)} not ok. "
        f"Generated {datetime.now().isoformat(timespec='seconds')}; the full table is "
        f'<a href="{sweep.RESULTS}">{sweep.RESULTS}</a>.</p>',
    ]
    if failed:
        parts.append("<h2>Runs that did not finish</h2><ul>")
        for r in failed:
            where = f"cell {r['cell']}: " if r["cell"] not in ("", None) else ""
            parts.append(
                f'<li class="failed"><a href="{quote(r["run"])}.ipynb">{html.escape(r["run"])}'
                f"</a> ({r['status']}): {html.escape(where + (r['error'] or ''))}</li>"
            )
        parts.append("</ul>")
    for name in dict.fromkeys(r["notebook"] for r in table.rows):
        rows = [r for r in table.rows if r["notebook"] == name]
        parts += [f"<h2>{html.escape(name)}</h2>", _table(rows)]
        images = _figures(rows, table.params, table.records)
        parts += [f'<figure><img src="data:image/png;base64,{b64}"></figure>' for b64 in images]
    body = "\n".join(parts)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def report(out: str | Path) -> Path:
    """Write `out/report.html` for the runs in `out`, atomically."""
    out = Path(out)
    page = render(sweep.results(out), title=f"qnb results: {out.resolve().name}")
    return runner.write_text_atomic(out / REPORT, page)
