"""Notebook 06 (dynamic_and_weight_only)
run by papermill with other parameters; its records checked."""

from __future__ import annotations

import pytest

from tests.notebooks.runs import run


def test_06_other_engine_and_bits(tmp_path):
    """qnnpack (the ARM engine): 8-bit dynamic activations, the fc call still reproduced by
    hand, the claims checked; weight-only at 2 bits per channel."""
    records = run(
        tmp_path,
        "06_dynamic_and_weight_only.ipynb",
        twice=True,
        engine="qnnpack",
        weight_only_bits=[8, 2],
        group_size=None,
        repeats=3,
    )
    assert records["engine"] == "qnnpack"
    assert records["dynamic_act_levels"] == 256  # qnnpack ignores reduce_range
    assert records["dynamic_fc_by_hand_max_diff"] == 0
    assert records["acc_dynamic_int8"] == pytest.approx(records["fp32_acc"], abs=0.01)
    assert records["size_ratio_dynamic_int8"] > 3
    assert (
        records["speedup_b256_dynamic_int8_p25"]
        <= records["speedup_b256_dynamic_int8"]
        <= records["speedup_b256_dynamic_int8_p75"]
    )
    assert {"acc_weight_only_int8", "acc_weight_only_int2"} <= set(records)
    assert records["claims_checked"] >= 5
