"""Notebook 04 (integer_arithmetic): the committed run's records, and papermill runs with other
parameters (fewer test images, another seed; qnnpack only)."""

from __future__ import annotations

from tests.notebooks.runs import NOTEBOOKS, run

NOTEBOOK = "04_integer_arithmetic.ipynb"
CLAIMS = 22  # every claims.expect / claims.skip sentence of the notebook, each run one way


def check_arithmetic(records: dict) -> None:
    """What every run must show, whatever its images, seed or engine."""
    assert records["integer_model_mismatches"] == 0
    assert records["claims_failed"] == 0
    assert records["claims_checked"] + records["claims_skipped"] == CLAIMS
    # the fixed-point CNN moves some codes, each by one step
    assert records["fixed_point_mismatches"] > 0 and records["fixed_point_max_diff"] == 1
    # the two x86 orders of the convolutions: at most 1 in 100,000 conv outputs differ
    assert records["conv_order_mismatches"] <= records["conv_outputs"] * 1e-5
    # requantization against the exact product: no ties, one rounding exact, two roundings
    # wrong more often than float32
    assert records["requant_ties"] == 0 and records["requant_single_rounding_off"] == 0
    assert records["requant_double_rounding_off"] > records["requant_float_off"]
    # int16 pairs: random 7-bit codes never saturate; real ones leave the calibrated range
    assert records["saturating_pairs_7bit"] == 0 < records["saturating_pairs_8bit"]
    assert records["real_codes_above_127_7bit"] > 0
    assert 100 * records["real_saturating_pairs_7bit"] < records["real_saturating_pairs_8bit"]
    assert records["bn_fold_max_weight_diff"] < 1e-6


def test_04_committed_notebook_holds_its_claims():
    """The committed notebook (defaults: all 10,000 test images, this machine's engine)."""
    from qnb import read_records

    records = read_records(NOTEBOOKS / NOTEBOOK)
    check_arithmetic(records)
    assert records["test_images"] == 10_000
    assert records["claims_skipped"] == 0  # an x86 build: every engine's claim was checked
    assert records["real_saturating_pairs_7bit"] > 0  # with reduce_range, on 10,000 images
    assert records["fixed_point_flips"] < 100  # well under 1% of 10,000 predictions


def test_04_fewer_images_other_seed(tmp_path):
    records = run(tmp_path, NOTEBOOK, twice=True, test_images=200, n_accumulators=20_000, seed=1)
    check_arithmetic(records)
    assert records["claims_skipped"] >= 1  # the prediction-flip rate is a 10,000-image claim


def test_04_on_qnnpack_follows_the_engine(tmp_path, monkeypatch):
    """With only qnnpack (an ARM build of torch), the integer reference rounds the bias to int32
    and still equals torch's codes; the x86 and oneDNN claims of section 2 are skipped (and
    the 10,000-image claim)."""
    monkeypatch.setenv("QNB_ENGINES", "qnnpack")
    records = run(tmp_path, NOTEBOOK, test_images=200, n_accumulators=20_000)
    assert records["engine"] == "qnnpack"
    check_arithmetic(records)
    assert records["claims_skipped"] >= 3
