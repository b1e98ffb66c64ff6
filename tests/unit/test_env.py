"""qnb.env: the int8 unit of a CPU and its peak int8:fp32 ratio follow its feature flags."""

import pytest

from qnb import env

NONE = dict.fromkeys(env._FEATURES, False)


@pytest.mark.parametrize(
    "flags, unit, ratio",
    [
        ({"avx2", "amx_int8", "avx512_vnni"}, "AMX", 32.0),  # Sapphire Rapids and later
        ({"avx2", "avx512f", "avx512_vnni"}, "VNNI", 4.0),  # Cascade Lake, Zen 4
        ({"avx2", "avx_vnni"}, "VNNI", 4.0),  # AVX-VNNI without AVX-512 (Alder Lake)
        ({"avx2", "fma"}, "AVX2", 4.0 / 3.0),  # Haswell .. Zen 3
        (set(), None, None),  # ARM, or an x86 without AVX2
    ],
)
def test_int8_unit_and_peak_follow_the_flags(monkeypatch, flags, unit, ratio):
    monkeypatch.setattr(env, "cpu_features", lambda: NONE | dict.fromkeys(flags, True))
    assert env.int8_unit() == unit
    assert env.int8_peak_ratio() == ratio
    report = env.report()
    assert report["int8_unit"] == (unit or "-")
    assert report["int8_peak_ratio"] == (None if ratio is None else round(ratio, 2))


def test_every_unit_says_which_kernels_use_it():
    for unit, (ratio, note) in env.INT8_UNITS.items():
        assert ratio > 1 and "int8" in note, unit
    assert "not by FBGEMM" in env.INT8_UNITS["AMX"][1]
