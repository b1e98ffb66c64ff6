"""Notebook 14 (llm_outliers_and_gguf)
run by papermill with other parameters; its records checked."""

from __future__ import annotations

import pytest

from tests.notebooks.runs import NOTEBOOKS, run

NOTEBOOK = "14_llm_outliers_and_gguf.ipynb"


def test_14_one_seed_few_windows(tmp_path):
    """Notebook 14 on seed 1, 78 test windows, 8 calibration windows, AWQ at W3 g64 only, W4A4
    only, a 2-bit cache only, two GGUF formats, every cell run twice: every encoder is still
    bit-exact with its reference and every fact claim holds, the sentences about the default
    run's verdict labels are skipped, and the records keep the orders that are properties of the
    methods (the 16-bit cache is the model, 2 bits cost, rotation helps 4-bit activations)."""
    records = run(
        tmp_path,
        NOTEBOOK,
        twice=True,
        seeds=[1],
        test_bytes=5000,
        calib_windows=8,
        awq_settings=[[3, 64]],
        act_bits=[4],
        kv_bits=[2],
        gguf_formats=["Q4_0", "Q4_K"],
    )
    assert records["claims_failed"] == 0
    # skipped: AWQ against RTN at W4 g128 and W3 g64 and its size, W4 and W4A8 with and without
    # rotation, LLM.int8 against fp32, against int8 on the first-token outlier and int8's cost
    # there, RTN against HQQ, the 4-bit cache (2), the 8-bit cache, the 8-bit cache's sample
    assert records["claims_skipped"] == 13
    assert records["seeds"] == 1 and records["test_windows"] == (5000 - 1) // 64
    assert records["verdicts"] == 2 + 1 + 1 + 2 + 1 + 1  # the family this run declared
    assert records["gguf_q8_0_mismatches"] == records["gguf_q4_0_mismatches"] == 0
    assert records["gguf_compared"] > 700_000 and records["gguf_q4_k_max_error"] == 0.0
    assert records["gguf_roundtrip_identical"] is True
    assert records["gguf_bits_per_weight_q4_0"] == records["gguf_bits_per_weight_q4_k"] == 4.5
    assert "gguf_bits_per_weight_q8_0" not in records
    assert records["hqq_mismatches"] == 0 and records["llm_int8_bnb_difference"] < 1e-4
    assert records["rotation_float_error"] < 1e-4 and records["awq_fold_float_error"] < 1e-4
    assert records["ppl_fp32_min"] == records["ppl_fp32"] == records["ppl_fp32_max"]  # one seed
    assert records["ppl_kv16"] == pytest.approx(records["ppl_fp32"], rel=1e-4)
    assert records["ppl_kv2"] > 1.01 * records["ppl_kv16"]
    assert records["kv_bytes_per_token_2"] == 224 and records["kv_bytes_per_token_16"] == 1024
    assert records["ppl_w4a4_rotated"] < records["ppl_w4a4"]
    assert records["ppl_w3_gptq_g64"] < records["ppl_w3_rtn_g64"]
    assert "ppl_w4_awq_g128" not in records and "ppl_w4a8_rotated" not in records
    assert "ppl_kv4" not in records


def test_14_defaults_hold_their_claims():
    """The committed notebook (defaults: three seeds, 312 test windows): no claim failed and
    none was skipped, every encoder is bit-exact with its reference, the files come back
    identical, the bits per weight and cache bytes are the layouts', every spread is ordered."""
    from qnb import read_records

    records = read_records(NOTEBOOKS / NOTEBOOK)
    assert records["seeds"] == 3 and records["test_windows"] == 312
    assert records["claims_checked"] == 37
    assert records["claims_failed"] == 0 and records["claims_skipped"] == 0
    assert records["verdicts"] == 13
    assert records["gguf_q8_0_mismatches"] == records["gguf_q4_0_mismatches"] == 0
    assert records["gguf_compared"] > 2_000_000 and records["gguf_q4_k_max_error"] == 0.0
    assert records["gguf_roundtrip_identical"] is True
    assert records["gguf_bits_per_weight_q8_0"] == 8.5
    assert records["gguf_bits_per_weight_q4_0"] == records["gguf_bits_per_weight_q4_k"] == 4.5
    assert records["hqq_mismatches"] == 0
    assert [records[f"kv_bytes_per_token_{b}"] for b in (16, 8, 4, 2)] == [1024, 608, 352, 224]
    assert records["ppl_kv2"] > records["ppl_kv4"] > records["ppl_kv16"]
    assert records["ppl_w4a4_rotated"] < records["ppl_w4a4"]
    for name, value in records.items():
        if f"{name}_min" in records:
            lo, hi = records[f"{name}_min"], records[f"{name}_max"]
            assert lo - 1e-9 <= value <= hi + 1e-9, name
