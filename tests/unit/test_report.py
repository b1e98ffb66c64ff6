"""qnb.report: vertical record tables (headline first, spread folded in), seed points, no torch.

The run folders here are written by hand (status files and notebooks holding records), so no
kernel starts; tests/unit/test_sweep.py renders the report of a real sweep.
"""

from __future__ import annotations

import re
import subprocess
import sys

import nbformat
import pytest
from matplotlib.collections import PathCollection

from qnb import report, sweep
from qnb.records import MIME_TYPE

RECORDS = {
    "engine": "x86",
    "threads": 2,
    "claims_checked": 3,
    "claims_failed": 0,
    "speedup_b256": 4.2,
    "speedup_b256_p25": 3.9,
    "speedup_b256_p75": 4.4,
    "fp32_acc": 0.979,
    "int8_acc": 0.974,
    "int8_acc_min": 0.969,
    "int8_acc_max": 0.978,
    "size_ratio": 3.8736,
    "sqnr_db_fc1": 36.21,
}


def _write_run(out, run, records, params=None, status="ok", index=0, notebook="05_x.ipynb"):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("qnb.record(...)")
    cell.outputs = [
        nbformat.v4.new_output(
            "display_data", data={MIME_TYPE: {"name": k, "value": v}, "text/plain": k}
        )
        for k, v in records.items()
    ]
    nb.cells = [cell]
    nbformat.write(nb, out / f"{run}.ipynb")
    sweep.write_json_atomic(
        sweep.status_path(out, run),
        {
            "run": run,
            "notebook": notebook,
            "index": index,
            "params": params or {},
            "status": status,
            "error": "" if status == "ok" else "RuntimeError: boom",
            "cell": None if status == "ok" else 3,
            "seconds": 12.34,
        },
    )


def _record_rows(page_part: str) -> list[tuple[str, str]]:
    """(name, shown value) of each row of the record tables in an HTML fragment."""
    return re.findall(r'<tr[^>]*><td>([^<]*)</td><td title="[^"]*">([^<]*)</td></tr>', page_part)


# --- one run's records ---------------------------------------------------------------------


def test_headline_records_come_first_in_pattern_order():
    names = ["engine", "claims_failed", "speedup_b1", "int8_acc", "size_ratio", "fp32_acc", "x"]
    assert report.headlines_first(names) == [
        "int8_acc",
        "fp32_acc",
        "speedup_b1",
        "size_ratio",
        "claims_failed",
        "engine",
        "x",
    ]


@pytest.mark.parametrize(
    "name, value, shown",
    [
        ("fp32_acc", 0.979, "97.9%"),
        ("acc_plain_cnn_per_tensor_w8", 1, "100.0%"),
        ("acc_delta", -0.012, "-0.012"),  # not a fraction in 0..1: not a percent
        ("speedup_b256", 4.533444, "4.53x"),
        ("size_ratio_resnet18", 3.949, "3.95x"),
        ("sqnr_db_fc1", 36.2123, "36.21"),
        ("budget_bytes", 206872.0, "2.069e+05"),
        ("threads", 2, "2"),
        ("engine", "x86", "x86"),
        ("artifact_identical", True, "True"),
    ],
)
def test_number_formats(name, value, shown):
    assert report.format_record(name, value) == shown


def test_rows_fold_the_spread_into_the_record():
    rows = report.record_rows(RECORDS)
    assert rows == [
        ("fp32_acc", "97.9%", True),
        ("int8_acc", "97.4% (range 96.9-97.8)", True),
        ("speedup_b256", "4.20x (IQR 3.90-4.40)", True),
        ("size_ratio", "3.87x", True),
        ("claims_checked", "3", True),
        ("claims_failed", "0", True),
        ("engine", "x86", False),
        ("threads", "2", False),
        ("sqnr_db_fc1", "36.21", False),
    ]


def test_a_spread_without_its_record_or_half_a_pair_stays_on_rows_of_its_own():
    records = {"speedup_b1_p25": 0.7, "speedup_b1_p75": 0.8, "x": 1.0, "x_min": 0.5}
    rows = report.record_rows(records)
    assert [name for name, _, _ in rows] == ["speedup_b1_p25", "speedup_b1_p75", "x", "x_min"]
    assert rows[2][1] == "1"


def test_missing_values_are_left_out_and_none_is_not_measured():
    rows = report.record_rows({"a": "", "int8_acc_x86": None, "fp32_acc": 0.5})
    assert rows == [("int8_acc_x86", "not measured", True), ("fp32_acc", "50.0%", True)]
    assert report.record_table({"a": ""}) == "<p>no records</p>"
    spread = {"speedup": None, "speedup_p25": 1.0, "speedup_p75": 2.0}  # nothing to fold into
    assert [r[1] for r in report.record_rows(spread)] == ["not measured", "1.00x", "2.00x"]


def test_record_table_is_vertical_escaped_and_marks_failed_claims():
    table = report.record_table({"claims_failed": 2, "note": "<b>&", "fp32_acc": 0.5})
    assert _record_rows(table) == [
        ("fp32_acc", "50.0%"),
        ("claims_failed", "2"),
        ("note", "&lt;b&gt;&amp;"),
    ]
    assert '<tr class="headline failed"><td>claims_failed</td>' in table
    assert '<td title="0.5">50.0%</td>' in table  # the exact value on hover
    assert "<b>" not in table


# --- plots ---------------------------------------------------------------------------------


def _points(ax) -> list[tuple[float, float]]:
    found = []
    for collection in ax.collections:
        if isinstance(collection, PathCollection):
            found += [tuple(p) for p in collection.get_offsets().tolist()]
    return sorted(found)


def test_swept_seeds_are_points_around_a_mean_line():
    rows = [
        {"bits": b, "seed": s, "acc": 0.9 + 0.01 * b + 0.001 * s} for b in (2, 4) for s in (0, 1, 2)
    ]
    ax = report.plot(rows, "bits", "acc", ["seed"]).axes[0]
    expected = sorted((r["bits"], r["acc"]) for r in rows)
    assert [x for x, _ in _points(ax)] == [x for x, _ in expected]
    assert [y for _, y in _points(ax)] == pytest.approx([y for _, y in expected])
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [2, 4]
    assert list(line.get_ydata()) == pytest.approx([0.921, 0.941])
    assert ax.get_legend() is None and "each seed" in ax.get_title()


def test_seeds_and_another_parameter_give_one_mean_line_per_value_of_the_other():
    rows = [
        {"bits": b, "mode": m, "seeds": [s], "acc": 0.9 + 0.01 * b + 0.001 * s + (m == "b") / 20}
        for b in (2, 4, 8)
        for m in ("a", "b")
        for s in (0, 1, 2, 3)
    ]
    ax = report.plot(rows, "bits", "acc", ["mode", "seeds"]).axes[0]
    assert len(_points(ax)) == 24
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["mode=a", "mode=b"]
    means = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}
    assert means["mode=a"] == pytest.approx([0.9215, 0.9415, 0.9815])


def test_without_seeds_each_combination_is_a_line_as_before():
    rows = [{"bits": b, "mode": m, "acc": b + (m == "b")} for b in (2, 4) for m in ("a", "b")]
    ax = report.plot(rows, "bits", "acc", ["mode"]).axes[0]
    assert [list(line.get_ydata()) for line in ax.get_lines()] == [[2, 4], [3, 5]]
    assert _points(ax) == []


# --- the page ------------------------------------------------------------------------------


def test_a_single_run_is_one_vertical_table_headline_first(tmp_path):
    _write_run(tmp_path, "05_x", RECORDS)
    page = report.report(tmp_path).read_text()
    assert _record_rows(page)[:3] == [
        ("fp32_acc", "97.9%"),
        ("int8_acc", "97.4% (range 96.9-97.8)"),
        ("speedup_b256", "4.20x (IQR 3.90-4.40)"),
    ]
    assert len(_record_rows(page)) == 9  # 13 records, 4 of them folded in as spread
    assert "speedup_b256_p25</td>" not in page
    assert page.count("<table>") == 1  # no runs table for a single run
    assert '<div class="run"><h3><a href="05_x.ipynb">05_x</a>: ok, 12.3 s</h3>' in page
    assert "data:image/png" not in page  # nothing swept, nothing to plot


def test_a_sweep_has_a_runs_table_folded_run_tables_and_plots(tmp_path):
    for i, (bits, seed) in enumerate((b, s) for b in (4, 8) for s in (0, 1)):
        run = f"02_y__bits={bits}__seed={seed}"
        failed = bits == 8 and seed == 1
        records = {"acc": 0.9 + bits / 100 + seed / 1000, "claims_failed": int(failed)}
        params = {"bits": bits, "seed": seed}
        status = "failed" if failed else "ok"
        _write_run(tmp_path, run, records, params, status, i, "02_y.ipynb")
    page = report.report(tmp_path).read_text()
    runs_table = page[page.index("<h2>02_y.ipynb</h2>") :].split("</table>")[0]
    assert "<th>run</th><th>bits</th><th>seed</th><th>status</th>" in runs_table
    assert runs_table.count("<tr>") == 5  # header + 4 runs
    assert '<span class="failed">1</span>' in runs_table  # claims failed in the failed run
    assert page.count('<details class="run">') == 4  # > OPEN_RUNS: folded
    assert "Runs that did not finish" in page and "cell 3: RuntimeError: boom" in page
    assert page.count("data:image/png;base64,") == 2  # acc vs bits, acc vs seed


def test_report_does_not_import_torch():
    code = "import sys, qnb.report; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
