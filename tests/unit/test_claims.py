"""qnb.claims: claims hold or warn, are counted once per text, facts apart from timing claims,
skipped claims apart from checked ones, and are recorded."""

import pytest

from qnb import claims


@pytest.fixture(autouse=True)
def fresh():
    claims.reset()
    yield
    claims.reset()


def test_a_claim_that_holds_prints_and_counts(capsys):
    assert claims.expect("int8 keeps accuracy", True, "97.9% vs 97.8%") is True
    out = capsys.readouterr().out
    assert "claim holds on this run: int8 keeps accuracy (97.9% vs 97.8%)" in out
    assert claims.failed() == []


def test_a_failing_claim_warns_every_time_and_never_raises():
    for _ in range(2):  # a cell run twice warns twice, counts once
        with pytest.warns(claims.ClaimWarning, match="does NOT hold on this run: QAT wins"):
            assert claims.expect("QAT wins", 0.95 > 0.96) is False
    assert claims.failed() == ["QAT wins"]


def test_summary_records_checked_and_failed(capsys):
    claims.expect("a", True)
    with pytest.warns(claims.ClaimWarning):
        claims.expect("b", False)
    claims.expect("a", True)  # the same claim again
    assert claims.summary() == (2, 1)
    out = capsys.readouterr().out
    assert "record: claims_checked = 2" in out and "record: claims_failed = 1" in out
    assert "failed: b" in out


def test_a_claim_rechecked_after_a_fix_counts_as_holding():
    with pytest.warns(claims.ClaimWarning):
        claims.expect("x", False)
    claims.expect("x", True)
    assert claims.failed() == []


@pytest.mark.parametrize("claim", ["", "   ", None, 3])
def test_a_claim_must_be_a_sentence(claim):
    with pytest.raises(ValueError, match="claim must be a non-empty sentence"):
        claims.expect(claim, True)


def test_detail_must_be_text():
    with pytest.raises(TypeError, match="detail must be a string, got float"):
        claims.expect("a", True, 0.5)


def test_timing_must_be_a_bool():
    with pytest.raises(TypeError, match="timing must be True or False, got 1"):
        claims.expect("a", True, timing=1)


# --- facts and timing claims, skipped claims, the summary ---------------------------------


@pytest.fixture
def records(monkeypatch):
    """What summary() records, as {name: value} (record itself prints; tested in test_records)."""
    seen = {}
    monkeypatch.setattr(claims, "record", lambda name, value: seen.__setitem__(name, value))
    return seen


def test_a_failed_timing_claim_is_counted_apart_from_the_facts(records, capsys):
    with pytest.warns(claims.ClaimWarning, match="int8 is faster.*A timing claim: a busy machine"):
        assert claims.expect("int8 is faster", False, "1.1x", timing=True) is False
    assert claims.failed() == []  # the facts: none failed
    assert claims.summary() == (1, 0)
    assert records == {"claims_checked": 1, "claims_failed": 0, "claims_skipped": 0,
                       "claims_timing_failed": 1}
    out = capsys.readouterr().out
    assert "timing claim failed (busy machine?): int8 is faster" in out
    assert "  failed: int8 is faster" not in out


def test_a_failed_fact_has_no_timing_excuse():
    with pytest.warns(claims.ClaimWarning) as caught:
        claims.expect("int8 keeps accuracy", False)
    assert "timing claim" not in str(caught[0].message)
    assert claims.failed() == ["int8 keeps accuracy"]


def test_a_timing_claim_that_holds_counts_as_checked(records):
    claims.expect("int8 is faster", True, timing=True)
    assert claims.summary() == (1, 0) and records["claims_timing_failed"] == 0


def test_a_skipped_claim_is_counted_and_printed_as_not_checked(records, capsys):
    claims.skip("x86 beats qnnpack", "this machine has no x86 engine")
    out = capsys.readouterr().out
    assert ("claim not checked on this run: x86 beats qnnpack (this machine has no x86 engine)"
            in out)
    assert "holds" not in out
    assert claims.failed() == []
    assert claims.summary() == (0, 0)
    assert records == {"claims_checked": 0, "claims_failed": 0, "claims_skipped": 1,
                       "claims_timing_failed": 0}


def test_a_claim_skipped_once_and_checked_later_counts_once(records):
    claims.skip("a", "branch not run")
    claims.skip("a", "branch not run")  # a cell run twice: still one skipped claim
    claims.expect("a", True)  # re-run with parameters that take the branch
    with pytest.warns(claims.ClaimWarning):
        claims.expect("b", False)
    claims.skip("b", "branch not run on this run")  # the same text skipped now: not failed
    assert claims.failed() == []
    assert claims.summary() == (1, 0)
    assert (records["claims_checked"], records["claims_skipped"]) == (1, 1)


def test_summary_records_the_four_numbers(records, capsys):
    claims.expect("fact holds", True)
    with pytest.warns(claims.ClaimWarning):
        claims.expect("fact fails", False)
    with pytest.warns(claims.ClaimWarning):
        claims.expect("speed fails", False, timing=True)
    claims.expect("speed holds", True, timing=True)
    claims.skip("not run", "no GPU")
    assert claims.summary() == (4, 1)
    assert records == {"claims_checked": 4, "claims_failed": 1, "claims_skipped": 1,
                       "claims_timing_failed": 1}
    out = capsys.readouterr().out
    assert "  failed: fact fails" in out
    assert "timing claim failed (busy machine?): speed fails" in out


def test_summary_prints_its_records_outside_a_notebook(capsys):
    claims.skip("s", "why")
    claims.summary()
    out = capsys.readouterr().out
    for line in ("claims_checked = 0", "claims_failed = 0", "claims_skipped = 1",
                 "claims_timing_failed = 0"):
        assert f"record: {line}" in out


def test_reset_forgets_every_kind_of_claim(records):
    claims.expect("a", True)
    with pytest.warns(claims.ClaimWarning):
        claims.expect("b", False)
    with pytest.warns(claims.ClaimWarning):
        claims.expect("c", False, timing=True)
    claims.skip("d", "why")
    claims.reset()
    assert claims.failed() == []
    assert claims.summary() == (0, 0)
    assert records == {"claims_checked": 0, "claims_failed": 0, "claims_skipped": 0,
                       "claims_timing_failed": 0}


@pytest.mark.parametrize(
    "claim, reason, match",
    [
        ("", "why", "claim must be a non-empty sentence"),
        (None, "why", "claim must be a non-empty sentence"),
        ("a", "", "reason must say why the claim is not checked, got ''"),
        ("a", "   ", "reason must say why"),
        ("a", None, "reason must say why .* got None"),
    ],
)
def test_skip_bad_input(claim, reason, match):
    with pytest.raises(ValueError, match=match):
        claims.skip(claim, reason)
    assert claims.summary() == (0, 0)
