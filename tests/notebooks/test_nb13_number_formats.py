"""Notebook 13 (number_formats)
run by papermill with other parameters; its records checked."""

from __future__ import annotations

import importlib.util

import pytest

from tests.notebooks.runs import NOTEBOOKS, run

NOTEBOOK = "13_number_formats.ipynb"
HAVE_BNB = importlib.util.find_spec("bitsandbytes") is not None
FP8 = ("e4m3", "e5m2", "e4m3fnuz", "e5m2fnuz")


def test_13_one_seed_two_formats_per_model(tmp_path):
    """Notebook 13 on seed 1 with two formats per model and fewer random FP8 inputs, every cell
    run twice: every encoder is still bit-exact with its reference, its fact claims hold, the
    sentences about the three shipped seeds' verdicts are skipped, and the orders that are
    properties of the formats hold (int8 far above FP8 E4M3 in SQNR, NF4 above the other 4-bit
    formats, one mantissa bit about 6 dB)."""
    records = run(
        tmp_path,
        NOTEBOOK,
        twice=True,
        seeds=[1],
        cnn_formats=["int4_g32", "nvfp4"],
        lm_formats=["int8_channel", "fp8_e4m3"],
        random_values=20000,
    )
    assert records["claims_failed"] == 0
    # skipped: the seven sentences about verdict labels on the three shipped seeds
    assert records["claims_skipped"] == 7
    assert records["seeds"] == 1 and records["test_images"] == 10000
    assert records["verdicts"] == 2  # one CNN pair, one language-model pair
    for short in FP8:
        assert records[f"fp8_{short}_mismatches"] == 0
        assert records[f"fp8_{short}_compared"] > 20000
    assert records["mx_mismatches"] == 0 and records["mx_compared"] > 1_000_000
    assert records["nvfp4_mismatches"] == 0 and records["nvfp4_compared"] > 100_000
    if HAVE_BNB:
        assert records["nf4_mismatches"] == 0 and records["nf4_compared"] > 100_000
        assert 0 < records["nf4_dq_codes_not_nearest"] < 67
    # the shipped seed-1 CNN: its committed fp32 accuracy, and 4-bit weights below it
    assert records["fp32_acc_min"] == records["fp32_acc"] == records["fp32_acc_max"] == 0.9227
    assert records["acc_int4_g32"] < records["fp32_acc"]
    assert records["acc_nvfp4"] < records["fp32_acc"]
    assert "acc_mxfp4" not in records and "ppl_nvfp4" not in records
    assert records["ppl_fp32"] < records["ppl_int8_channel"] < records["ppl_fp8_e4m3"] < 5.2
    assert records["sqnr_db_int8_channel"] > records["sqnr_db_fp8_e4m3"] + 10
    assert records["sqnr_db_nf4_dq"] > records["sqnr_db_nvfp4"] > records["sqnr_db_int4_g32"] \
        > records["sqnr_db_mxfp4"]
    assert 5 < records["sqnr_db_fp8_e4m3"] - records["sqnr_db_fp8_e5m2"] < 7
    assert records["bits_per_value_mxfp4"] == records["bits_per_value_int4_g64"] == 4.25
    assert records["bits_per_value_int4_g32"] == 4.5 < records["bits_per_value_nvfp4"] < 4.501


def test_13_defaults_hold_their_claims():
    """The committed notebook (defaults: three seeds, four CNN and six language-model formats):
    no fact claim failed and none was skipped, every encoder is bit-exact with its reference on
    more than zero values, and every spread is ordered."""
    from qnb import read_records

    records = read_records(NOTEBOOKS / NOTEBOOK)
    assert records["seeds"] == 3 and records["test_images"] == 10000
    assert records["claims_checked"] == 28
    assert records["claims_failed"] == 0 and records["claims_skipped"] == 0
    assert records["verdicts"] == 7
    for short in FP8:
        assert records[f"fp8_{short}_mismatches"] == 0 and records[f"fp8_{short}_compared"] > 0
    for name in ("mx", "nvfp4", "nf4"):
        assert records[f"{name}_mismatches"] == 0 and records[f"{name}_compared"] > 0
    for name, value in records.items():
        if f"{name}_min" in records:
            assert records[f"{name}_min"] - 1e-9 <= value <= records[f"{name}_max"] + 1e-9, name
    assert records["fp32_acc_min"] == 0.9198 and records["fp32_acc_max"] == 0.9244
    for name in ("int4_g32", "nvfp4", "mxfp4", "nf4_dq"):
        assert records[f"acc_{name}"] < records["fp32_acc"]
    for name in ("int8_channel", "fp8_e4m3", "int4_g32", "nvfp4", "mxfp4", "nf4_dq"):
        assert records[f"ppl_{name}"] > records["ppl_fp32"] * 0.999
    assert records["bits_per_value_nf4_dq"] == pytest.approx(4.1274, abs=1e-3)
