"""An HTML report of a run folder, in one self-contained `report.html` (plots embedded as PNG).

Per notebook:

- with several runs (a sweep), a narrow table of the runs: link, swept parameters, status,
  seconds, claims failed;
- per run, its records as a vertical name/value table (side by side when there are several;
  folded when there are more than `OPEN_RUNS`). Headline records come first, in the order of
  the name patterns in `HEADLINES` (accuracies, speedups, size ratios, claims), then the rest in
  the order the notebook recorded them. Accuracies in 0..1 read as percent, speedups and ratios
  with a "x"; the exact value is the cell's tooltip and in `results.csv`;
- per swept parameter, each numeric record that varies plotted against it. A swept `seed` or
  `seeds` parameter is not a line of its own: its runs are drawn as one point per seed, with a
  line through their mean.

Spread convention: a record `<name>` may come with companions that the report shows next to it
instead of on rows of their own: `<name>_p25` and `<name>_p75` (the interquartile range, for
example of paired speed ratios) as "4.2x (IQR 3.9-4.4)", and `<name>_min` and `<name>_max` (the
range, for example over training seeds) as "97.4% (range 96.9-97.8)".

This module does not import torch (nor do `sweep` and `runner`, which it uses).
"""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime
from fnmatch import fnmatchcase
from pathlib import Path
from urllib.parse import quote

from matplotlib.figure import Figure

from qnb import sweep
from qnb.files import write_atomic

REPORT = "report.html"
MAX_LINES = 8  # more combinations than this are drawn as points without a legend
OPEN_RUNS = 3  # a notebook with more runs than this shows each run's records folded
HEADLINES = ("*acc*", "speedup*", "size_ratio*", "claims_*")  # shown first, in this order
SPREADS = (("_p25", "_p75", "IQR"), ("_min", "_max", "range"))  # companions of a record
SEED_PARAMS = ("seed", "seeds")  # swept parameters drawn as points, not lines
_PERCENT, _TIMES = ("*acc*",), ("speedup*", "*_ratio*", "ratio*")
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
tr.headline td { font-weight: 600; }
.failed { color: #b00020; }
.run { display: inline-block; vertical-align: top; margin: 0 2em 1em 0; }
.run h3 { font-size: 1em; margin: 0.5em 0 0; }
figure { display: inline-block; margin: 0.5em; }
"""


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(name, p) for p in patterns)


# --- one run's records as name/value rows --------------------------------------------------


def headlines_first(names: list[str]) -> list[str]:
    """`names` with the headline records first (in `HEADLINES` order), then the others in
    their order."""
    first = [n for p in HEADLINES for n in names if fnmatchcase(n, p)]
    first = list(dict.fromkeys(first))
    return first + [n for n in names if n not in first]


def format_record(name: str, value) -> str:
    """A record's value as the report shows it: "97.9%" for an accuracy in 0..1, "4.53x" for a
    speedup or ratio, otherwise up to 4 significant digits (ints and strings as they are)."""
    return "".join(_split_unit(name, value))


def _split_unit(name: str, value) -> tuple[str, str]:
    if value is None:  # recorded as None: the run could not measure it (an x86-only figure)
        return "not measured", ""
    if not _is_number(value):
        return str(value), ""
    if _matches(name, _PERCENT) and 0 <= value <= 1:
        return f"{100 * value:.1f}", "%"
    if _matches(name, _TIMES):
        return f"{value:.2f}", "x"
    if isinstance(value, int):
        return str(value), ""
    return f"{value:.4g}", ""


def record_rows(records: dict) -> list[tuple[str, str, bool]]:
    """`(name, shown value, is headline)` for one run's records: headline records first, each
    with its spread companions (see the module docstring) folded into its value. A record the
    run does not have ("") is left out; one recorded as None reads "not measured"."""
    present = {k: v for k, v in records.items() if v != ""}
    folded: set[str] = set()
    shown: dict[str, str] = {}
    for name, value in present.items():
        text, unit = _split_unit(name, value)
        parts = []
        for low, high, label in SPREADS:
            lo, hi = present.get(name + low), present.get(name + high)
            if _is_number(value) and _is_number(lo) and _is_number(hi):
                parts.append(f"{label} {_split_unit(name, lo)[0]}-{_split_unit(name, hi)[0]}")
                folded |= {name + low, name + high}
        shown[name] = f"{text}{unit}" + (f" ({'; '.join(parts)})" if parts else "")
    names = headlines_first([n for n in present if n not in folded])
    return [(n, shown[n], _matches(n, HEADLINES)) for n in names]


def record_table(records: dict) -> str:
    """One run's records as a vertical name/value HTML table, headline records first."""
    if all(v == "" for v in records.values()):
        return "<p>no records</p>"
    body = []
    for name, text, headline in record_rows(records):
        raw = records[name]
        bad = name == "claims_failed" and _is_number(raw) and raw > 0
        classes = " ".join(c for c, on in (("headline", headline), ("failed", bad)) if on)
        row_class = f' class="{classes}"' if classes else ""
        body.append(
            f"<tr{row_class}><td>{html.escape(name)}</td>"
            f'<td title="{html.escape(sweep.show_param(raw))}">{html.escape(text)}</td></tr>'
        )
    return (
        "<table><thead><tr><th>record</th><th>value</th></tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table>"
    )


# --- plots ---------------------------------------------------------------------------------


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def plot(rows: list[dict], x: str, y: str, others: list[str]) -> Figure:
    """Record `y` against parameter `x`, one line per combination of the `others`; swept seeds
    (`SEED_PARAMS` among the `others`) are one point per seed around a line through the mean."""
    fig = Figure(figsize=(5, 3.4))
    ax = fig.subplots()
    values = list(dict.fromkeys(sweep.show_param(r[x]) for r in rows))
    numeric = all(_is_number(r[x]) for r in rows)
    position = (lambda v: v) if numeric else (lambda v: values.index(sweep.show_param(v)))
    seeds = [o for o in others if o in SEED_PARAMS]
    lines = [o for o in others if o not in SEED_PARAMS]
    groups: dict[str, list[dict]] = {}
    for row in rows:
        label = ", ".join(f"{o}={sweep.show_param(row[o])}" for o in lines)
        groups.setdefault(label, []).append(row)
    for i, (label, group) in enumerate(groups.items()):
        points = sorted((position(r[x]), r[y]) for r in group if _is_number(r[y]))
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        color = "C0" if len(groups) > MAX_LINES else f"C{i % 10}"
        if seeds:
            ax.scatter(xs, ys, s=14, alpha=0.6, color=color)
            means = {}
            for px, py in points:
                means.setdefault(px, []).append(py)
            xs, ys = list(means), [sum(v) / len(v) for v in means.values()]
        if len(groups) > MAX_LINES and not seeds:
            ax.scatter(xs, ys, s=14, color=color)
        elif len(groups) <= MAX_LINES:
            ax.plot(xs, ys, marker="" if seeds else "o", color=color, label=label or None)
    if not numeric:
        ax.set_xticks(range(len(values)), values)
    elif len(values) <= 12:
        ax.set_xticks(sorted({r[x] for r in rows}))
    if 1 < len(groups) <= MAX_LINES:
        ax.legend(fontsize="small")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"{y} vs {x}" + (f" (points: each {seeds[0]}; line: mean)" if seeds else ""))
    ax.grid(alpha=0.3)
    return fig


def _figures(rows: list[dict], params: list[str], records: list[str]) -> list[str]:
    """Base64 PNGs: each varying numeric record against each swept parameter (ok runs)."""
    ok = [r for r in rows if r["status"] == "ok"]
    swept = [p for p in params if len({sweep.show_param(r[p]) for r in ok}) > 1]
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


# --- the page ------------------------------------------------------------------------------


def _link(run: str) -> str:
    return f'<a href="{quote(run)}.ipynb">{html.escape(run)}</a>'


def _status(row: dict) -> str:
    text = html.escape(str(row["status"]))
    return text if row["status"] == "ok" else f'<span class="failed">{text}</span>'


def _seconds(row: dict) -> str:
    return f"{row['seconds']:.1f} s" if _is_number(row.get("seconds")) else ""


def _runs_table(rows: list[dict], params: list[str]) -> str:
    """A narrow table of a notebook's runs: link, swept parameters, status, seconds, claims."""
    used = [p for p in params if any(r.get(p) not in ("", None) for r in rows)]
    claims = any(r.get("claims_failed") not in ("", None) for r in rows)
    head = ["run", *used, "status", "seconds"] + (["claims failed"] if claims else [])
    body = []
    for r in rows:
        cells = [_link(r["run"]), *(html.escape(sweep.show_param(r.get(p, ""))) for p in used)]
        cells += [_status(r), _seconds(r)]
        if claims:
            n = r.get("claims_failed")
            shown = "" if n in ("", None) else html.escape(sweep.show_param(n))
            cells.append(f'<span class="failed">{n}</span>' if _is_number(n) and n else shown)
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _run_block(row: dict, records: list[str], folded: bool) -> str:
    """One run: its name, status and time, then its records as a vertical table."""
    title = f"{_link(row['run'])}: {_status(row)}"
    if _seconds(row):
        title += f", {_seconds(row)}"
    table = record_table({k: row.get(k, "") for k in records})
    if folded:
        return f'<details class="run"><summary>{title}</summary>{table}</details>'
    return f'<div class="run"><h3>{title}</h3>{table}</div>'


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
                f'<li class="failed">{_link(r["run"])} ({html.escape(str(r["status"]))}): '
                f"{html.escape(where + (r['error'] or ''))}</li>"
            )
        parts.append("</ul>")
    for name in dict.fromkeys(r["notebook"] for r in table.rows):
        rows = [r for r in table.rows if r["notebook"] == name]
        parts.append(f"<h2>{html.escape(name)}</h2>")
        if len(rows) > 1:
            parts.append(_runs_table(rows, table.params))
        images = _figures(rows, table.params, table.records)
        parts += [f'<figure><img src="data:image/png;base64,{b64}"></figure>' for b64 in images]
        folded = len(rows) > OPEN_RUNS
        parts.append("<div>" + "".join(_run_block(r, table.records, folded) for r in rows))
        parts.append("</div>")
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
    return write_atomic(out / REPORT, page)
