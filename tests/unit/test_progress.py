"""qnb.progress: the bar follows QNB_PROGRESS; text bars stay short, `off` prints nothing."""

from __future__ import annotations

import io

import pytest
from tqdm import std
from tqdm.notebook import tqdm_notebook

from qnb import progress as qp


@pytest.fixture(autouse=True)
def _no_inherited_mode(monkeypatch):
    monkeypatch.delenv(qp.ENV_VAR, raising=False)


def test_mode_defaults_to_auto():
    assert qp.mode() == "auto"


@pytest.mark.parametrize("value", ["text", "TEXT", " off ", "auto"])
def test_mode_reads_the_environment(monkeypatch, value):
    monkeypatch.setenv(qp.ENV_VAR, value)
    assert qp.mode() == value.strip().lower()


def test_unknown_mode_names_the_variable_and_choices(monkeypatch):
    monkeypatch.setenv(qp.ENV_VAR, "fancy")
    with pytest.raises(ValueError, match=r"QNB_PROGRESS='fancy'.*auto, text, off"):
        qp.progress(range(3))
    with pytest.raises(ValueError, match=r"mode='fancy'"):
        qp.progress(range(3), mode="fancy")


def test_text_mode_writes_a_couple_of_lines_for_a_long_loop(monkeypatch):
    monkeypatch.setenv(qp.ENV_VAR, "text")
    out = io.StringIO()
    items = list(qp.progress(range(5000), desc="calibrate", file=out, delay=0))
    assert items == list(range(5000))
    text = out.getvalue()
    redraws = text.count("\r")
    assert 1 <= redraws <= 3, text  # start and end, not one update per item
    assert "calibrate" in text and "5000/5000" in text and "100%" in text
    lines = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]
    assert lines and all(len(line) <= qp.TEXT_NCOLS for line in lines), lines
    assert text.isascii()


def test_text_mode_bar_is_plain_tqdm_with_fixed_width(monkeypatch):
    monkeypatch.setenv(qp.ENV_VAR, "text")
    bar = qp.progress(range(3), file=io.StringIO())
    try:
        assert type(bar) is std.tqdm
        assert bar.ncols == qp.TEXT_NCOLS and bar.mininterval == qp.TEXT_MININTERVAL
    finally:
        bar.close()


def test_off_mode_prints_nothing_and_still_iterates(monkeypatch):
    monkeypatch.setenv(qp.ENV_VAR, "off")
    out = io.StringIO()
    assert sum(qp.progress(range(100), file=out, disable=False)) == sum(range(100))
    assert out.getvalue() == ""


def test_quick_loops_leave_no_bar(monkeypatch):
    out = io.StringIO()
    assert sum(qp.progress(range(100), mode="text", file=out)) == sum(range(100))
    assert out.getvalue() == ""  # finished before SHOW_AFTER seconds


def test_manual_bar_with_total(monkeypatch):
    out = io.StringIO()
    with qp.progress(total=4, mode="text", file=out, delay=0) as bar:
        for _ in range(4):
            bar.update()
    assert "4/4" in out.getvalue()


def test_auto_outside_a_kernel_is_a_terminal_bar(monkeypatch):
    out = io.StringIO()
    bar = qp.progress(range(2), file=out)
    try:
        assert isinstance(bar, std.tqdm) and not isinstance(bar, tqdm_notebook)
    finally:
        bar.close()


@pytest.mark.parametrize("value", [None, True, False])
def test_check_enabled_accepts_none_and_bools(value):
    assert qp.check_enabled(value) is value


@pytest.mark.parametrize("value", ["yes", 1, 0.0])
def test_check_enabled_names_the_bad_value(value):
    with pytest.raises(TypeError, match=rf"must be None \(auto\), True or False, got {value!r}"):
        qp.check_enabled(value)


def test_optional_true_shows_a_bar_even_when_the_environment_says_off(monkeypatch):
    monkeypatch.setenv(qp.ENV_VAR, "off")
    assert not qp.bar_as_asked([1], True).disable
    assert qp.bar_as_asked([1], None).disable
    monkeypatch.setenv(qp.ENV_VAR, "text")
    assert qp.bar_as_asked([1], False).disable
