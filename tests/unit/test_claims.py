"""qnb.claims: claims hold or warn, are counted once per text, and are recorded."""

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
