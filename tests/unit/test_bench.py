"""Latency and size measurement: validation, refusal of undeployable models, state restore.

No test asserts a speed: the cores are shared, so only structure, order and sizes are checked.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn
from torch.ao.quantization import FakeQuantize, convert, get_default_qconfig, prepare

from qnb import bench, models, simulate
from qnb.env import hide_deprecation_warnings

hide_deprecation_warnings()

X = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
CORES = os.cpu_count() or 1
pytestmark = pytest.mark.usefixtures("torch_state")


@pytest.fixture(scope="module")
def fp32():
    return models.build("plain_cnn", seed=0).eval()


def _prepared(model: nn.Module) -> nn.Module:
    m = simulate.fused_copy(model)
    m.qconfig = get_default_qconfig("x86")
    torch.backends.quantized.engine = "x86"
    prepare(m, inplace=True)
    with torch.inference_mode():
        m(X)
    return m


@pytest.fixture(scope="module")
def int8(fp32):
    engine = torch.backends.quantized.engine
    try:
        return convert(_prepared(fp32), inplace=False)
    finally:
        torch.backends.quantized.engine = engine


class Recorder(nn.Module):
    """A stand-in model that logs its name and the threads/engine it ran under."""

    def __init__(self, name: str, log: list, fail_at: int | None = None) -> None:
        super().__init__()
        self.name, self.log, self.fail_at = name, log, fail_at
        self.seen: list[tuple[int, str]] = []
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append(self.name)
        self.seen.append((torch.get_num_threads(), torch.backends.quantized.engine))
        if self.fail_at is not None and len(self.seen) >= self.fail_at:
            raise RuntimeError("boom")
        return x


def _other_threads() -> int:
    return 1 if torch.get_num_threads() != 1 else min(2, CORES)


def _other_engine() -> str:
    engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    return next(e for e in engines if e != torch.backends.quantized.engine)


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"repeats": 0}, ValueError, r"repeats must be an int >= 1, got 0"),
        ({"repeats": -3}, ValueError, r"repeats must be an int >= 1, got -3"),
        ({"repeats": 2.5}, TypeError, r"repeats must be an int >= 1, got 2.5"),
        ({"repeats": True}, TypeError, r"repeats must be an int >= 1, got True"),
        ({"warmup": -1}, ValueError, r"warmup must be an int >= 0, got -1"),
        ({"threads": 0}, ValueError, rf"threads must be an int in 1..{CORES}, got 0"),
        ({"threads": CORES + 1}, ValueError, rf"threads must be an int in 1\.\.{CORES}, got"),
        ({"threads": "2"}, TypeError, r"threads must be an int in 1\.\."),
        ({"inner": 0}, ValueError, r"inner must be an int in 1\.\."),
        ({"engine": "tpu"}, ValueError, r"engine must be one of .*'x86'.*; got 'tpu'; None here"),
        ({"engine": "none"}, ValueError, r"engine must be one of .*; got 'none'; None here keeps"),
        ({"baseline": "int4"}, ValueError, r"baseline must be None or one of 'a', got 'int4'"),
        ({"progress": "yes"}, TypeError, r"progress must be None"),
    ],
)
def test_bad_arguments_are_named_with_their_value(kwargs, error, match):
    with pytest.raises(error, match=match):
        bench.compare({"a": Recorder("a", [])}, X, **kwargs)


@pytest.mark.parametrize(
    ("models_arg", "example", "error", "match"),
    [
        ({}, X, ValueError, r"models must name at least one model, got an empty dict"),
        ([nn.Identity()], X, TypeError, r"models must be a dict .*, got list"),
        ({"a": lambda x: x}, X, TypeError, r"model 'a' must be a torch.nn.Module, got function"),
        ({1: nn.Identity()}, X, TypeError, r"models keys must be str names, got 1"),
        (
            {"a": nn.Identity().eval()},
            "x",
            TypeError,
            r"example must be an input tensor .*, got str",
        ),
        ({"a": nn.Identity().eval()}, torch.tensor(1.0), ValueError, r"example must be a batch"),
        ({"a": nn.Identity().eval()}, torch.full((2, 3), torch.nan), ValueError, r"NaN or inf"),
        ({"a": nn.Dropout()}, X, ValueError, r"model 'a' is in training mode: call .eval()"),
    ],
)
def test_bad_models_and_examples_are_refused(models_arg, example, error, match):
    with pytest.raises(error, match=match):
        bench.compare(models_arg, example)


# --- models that must not be timed -------------------------------------------------------


def test_an_observed_model_is_refused_with_the_observer_path(fp32):
    observed = _prepared(fp32)
    with pytest.raises(ValueError, match=r"model 'int8' still holds an observer at ") as info:
        bench.compare({"fp32": fp32, "int8": observed}, X)
    message = str(info.value)
    assert "activation_post_process (" in message and "Observer)" in message
    assert "torch.ao.quantization.convert" in message and "more)" in message


def test_a_simulated_model_is_refused_as_fake_quant(fp32):
    sim, _ = simulate.simulate(fp32, weight_bits=8, act_bits=8, calib=[torch.randn(2, 1, 28, 28)])
    with pytest.raises(ValueError, match=r"model 'sim' still holds a fake-quant module at "):
        bench.compare({"sim": sim}, X)
    with pytest.raises(ValueError, match=r"\(FakeQuant\)"):
        bench.deployable(sim)


def test_a_torch_ao_fake_quantize_is_refused():
    qat = nn.Sequential(nn.Linear(4, 4), FakeQuantize()).eval()
    with pytest.raises(ValueError, match=r"model still holds a fake-quant module at 1 "):
        bench.deployable(qat)


def test_float_and_converted_models_are_deployable(fp32, int8):
    assert bench.deployable(fp32) is fp32
    assert bench.deployable(int8, "int8") is int8


# --- measurement ----------------------------------------------------------------------------


def test_runs_are_interleaved_and_the_order_alternates():
    log: list[str] = []
    fakes = {n: Recorder(n, log) for n in "abc"}
    bench.compare(fakes, X, warmup=1, repeats=4, inner=1)
    assert log == list("abc" + "abc" + "cba" + "abc" + "cba")  # warm-up round, 4 timed rounds


def test_threads_and_engine_are_set_for_the_run_and_restored_after():
    threads, engine = _other_threads(), _other_engine()
    before = torch.get_num_threads(), torch.backends.quantized.engine
    fake = Recorder("a", [])
    result = bench.compare({"a": fake}, X, warmup=1, repeats=2, threads=threads, engine=engine)
    assert set(fake.seen) == {(threads, engine)}
    assert (torch.get_num_threads(), torch.backends.quantized.engine) == before
    assert result.context()["threads"] == threads and result.context()["engine"] == engine


def test_threads_and_engine_are_restored_when_the_model_raises():
    before = torch.get_num_threads(), torch.backends.quantized.engine
    fakes = {"ok": Recorder("ok", []), "bad": Recorder("bad", [], fail_at=3)}
    with pytest.raises(RuntimeError, match="boom") as info:
        bench.compare(
            fakes, X, warmup=1, repeats=5, threads=_other_threads(), engine=_other_engine()
        )
    assert (torch.get_num_threads(), torch.backends.quantized.engine) == before
    assert "model 'bad'" in "".join(info.value.__notes__)


def test_result_table_context_and_speedups(fp32, int8):
    result = bench.compare({"fp32": fp32, "int8": int8}, X, warmup=1, repeats=3, threads=1)
    table = result.table()
    assert list(table.index) == ["fp32", "int8"]
    assert {"median_ms", "p25_ms", "p75_ms", "min_ms", "speedup", "size_bytes"} <= set(table)
    assert table.loc["fp32", "speedup"] == 1.0 == result.speedup("fp32")
    assert table.loc["int8", "speedup"] == result.speedup("int8") == result.paired("int8").value
    assert table.loc["int8", "speedup_p25"] <= result.speedup("int8")
    assert result.speedup("int8") <= table.loc["int8", "speedup_p75"]
    assert (table["min_ms"] <= table["median_ms"]).all() and (table["calls_per_sample"] >= 1).all()
    context = result.context()
    assert context["threads"] == 1 and context["batch"] == 2 and context["repeats"] == 3
    assert context["engine"] == torch.backends.quantized.engine
    assert {"torch", "cpu", "cpu_features", "int8_peak_ratio", "load_1min"} <= set(context)
    text, page = str(result), result._repr_html_()
    assert repr(result) == text
    assert text.startswith(result.summary()) and "batch 2" in text and "1 thread(s)" in text
    assert page.index("thread(s)") < page.index("<table")
    with pytest.raises(KeyError, match="name must be one of 'fp32', 'int8', got 'fp16'"):
        result.speedup("fp16")


def test_baseline_and_callable_example():
    fakes = {"a": Recorder("a", []), "b": Recorder("b", [])}
    result = bench.compare(fakes, lambda m: m(X), baseline="b", warmup=0, repeats=2)
    assert result.speedup("b") == 1.0 and result.baseline == "b"
    assert result.context()["batch"] is None and "batch ?" in str(result)


# --- size ------------------------------------------------------------------------------------


def test_int8_state_is_under_a_third_of_fp32(fp32, int8):
    assert bench.serialized_size(int8) < bench.serialized_size(fp32) / 3


def test_size_on_disk_of_a_saved_state_dict(int8, tmp_path):
    path = tmp_path / "int8.pt"
    torch.save(int8.state_dict(), path)
    assert bench.size_on_disk(path) == path.stat().st_size > 0
    with pytest.raises(FileNotFoundError, match="is not a file"):
        bench.size_on_disk(tmp_path / "missing.pt")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got OrderedDict"):
        bench.serialized_size(int8.state_dict())


# --- the engine x threads x batch grid -------------------------------------------------------


def test_speedups_times_every_engine_thread_count_and_batch():
    log: list[str] = []
    fp32, int8 = Recorder("fp32", log), {"x86": Recorder("x86", log), "onednn": Recorder("1", [])}
    threads = sorted({1, CORES})
    before = torch.get_num_threads(), torch.backends.quantized.engine
    table = bench.speedups(fp32, int8, [X[:1], X], threads=threads, warmup=0, repeats=2)
    assert len(table) == 2 * len(threads) * 2
    assert list(table.columns[:3]) == ["engine", "threads", "batch"]
    assert list(table.engine) == ["x86"] * (2 * len(threads)) + ["onednn"] * (2 * len(threads))
    assert table.groupby(["engine", "threads", "batch"]).size().eq(1).all()
    assert set(int8["x86"].seen) == {(t, "x86") for t in threads}
    assert set(int8["onednn"].seen) == {(t, "onednn") for t in threads}
    assert (table.speedup_p25 <= table.speedup).all() and (table.speedup <= table.speedup_p75).all()
    assert (torch.get_num_threads(), torch.backends.quantized.engine) == before


def test_speedups_time_one_fp32_baseline_per_setting_shared_by_every_engine():
    log: list[str] = []
    fp32 = Recorder("fp32", log)
    int8 = {"x86": Recorder("x86", log), "qnnpack": Recorder("qnnpack", log)}
    table = bench.speedups(fp32, int8, [X[:1], X], threads=[1], warmup=0, repeats=3)
    assert table.groupby("batch").fp32_ms.nunique().eq(1).all()  # one fp32 median per setting
    assert {e for _, e in int8["x86"].seen} == {"x86"}
    assert {e for _, e in int8["qnnpack"].seen} == {"qnnpack"}
    # the calls, runs of one model collapsed: fp32 alternates with the two int8 models (never
    # one fp32 run per engine): between two fp32 runs both engines ran, and fp32 ran once per
    # round (+ once to size its samples) per setting, not once per engine
    runs = [name for i, name in enumerate(log) if i == 0 or log[i - 1] != name]
    between = "|".join(runs).split("fp32")
    assert all({"x86", "qnnpack"} <= set(part.strip("|").split("|")) for part in between[1:-1])
    assert runs.count("fp32") <= 2 * (1 + 3)


def test_speedups_run_each_qnb_int8_model_under_its_own_engine(fp32):
    # int8 models built by qnb refuse any engine but their own (EngineMismatchError), so this
    # fails unless the timing loop switches the engine between models
    from qnb import ptq

    engines = [e for e in ("x86", "qnnpack") if e in torch.backends.quantized.supported_engines]
    if len(engines) < 2:
        pytest.skip(f"needs two engines, this torch has {engines}")
    calib = [torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))]
    int8 = {e: ptq.quantize_static(fp32, calib, engine=e)[0] for e in engines}
    before = torch.backends.quantized.engine
    table = bench.speedups(fp32, int8, [X], threads=[1], warmup=1, repeats=2)
    assert list(table.engine) == engines and table.fp32_ms.nunique() == 1
    assert torch.backends.quantized.engine == before


def test_an_engine_per_model_is_set_before_each_call_and_restored():
    log: list[str] = []
    fakes = {"fp32": Recorder("fp32", log), "a": Recorder("a", log), "b": Recorder("b", log)}
    other, before = _other_engine(), torch.backends.quantized.engine
    result = bench.compare(fakes, X, warmup=1, repeats=4, inner=1, engine={"a": other, "b": before})
    forward, back = ["fp32", "a", "b"], ["b", "a", "fp32"]
    assert log == forward + forward + back + forward + back  # warm-up round, 4 timed rounds
    assert {e for _, e in fakes["a"].seen} == {other}
    assert {e for _, e in fakes["b"].seen} == {before}
    assert {e for _, e in fakes["fp32"].seen} == {before}  # not named: the current engine
    assert torch.backends.quantized.engine == before
    assert result.context()["engine"] == {"a": other, "b": before}
    assert result.table().engine.to_dict() == {"fp32": "-", "a": other, "b": before}
    assert str(result).startswith("engine per model, ")


@pytest.mark.parametrize(
    ("engine", "error", "match"),
    [
        ({"c": "x86"}, ValueError, r"engine names model 'c', which is not one of 'a', 'b'"),
        ({"a": "tpu"}, ValueError, r"engine must be one of .*; got 'tpu'"),
        (["x86"], TypeError, r"engine must be None, an engine name or a dict .*, got list"),
    ],
)
def test_bad_engine_per_model_is_refused_before_timing(engine, error, match):
    log: list[str] = []
    with pytest.raises(error, match=match):
        bench.compare({"a": Recorder("a", log), "b": Recorder("b", log)}, X, engine=engine)
    assert log == []


def test_paired_speedup_is_the_median_and_iqr_of_the_round_ratios():
    rows = [
        bench.Row("fp32", [10.0, 12.0, 8.0, 11.0], 1),
        bench.Row("int8", [2.0, 4.0, 2.0, 2.0], 1),
        bench.Row("other", [5.0, 5.0, 5.0, 5.0], 1),
    ]
    result = bench.BenchResult(rows, "fp32")
    speedup = result.paired("int8")
    ratios = [5.0, 3.0, 4.0, 5.5]  # per round: fp32 / int8; ratio of medians 10.5 / 2 = 5.25
    assert speedup.value == 4.5 == result.speedup("int8")  # the median of the paired ratios
    assert (speedup.p25, speedup.p75) == pytest.approx(tuple(np_quantiles(ratios)))
    assert str(speedup) == "4.50x (IQR 3.75-5.12)"
    against = result.paired("int8", baseline="other")
    assert (against.value, against.p25, against.p75) == pytest.approx((2.5, 2.1875, 2.5))
    table = result.table()
    assert table.loc["int8", "speedup_p25"] == speedup.p25
    with pytest.raises(KeyError, match="name must be one of 'fp32', 'int8', 'other', got 'x'"):
        result.paired("int8", baseline="x")


@pytest.mark.parametrize(
    ("load", "busy"), [(1.99, False), (2.0, True), (7.5, True), (None, False)]
)
def test_a_load_at_or_above_the_core_count_says_the_timings_are_not_to_be_trusted(load, busy):
    rows = [bench.Row("fp32", [2.0, 2.0], 1), bench.Row("int8", [1.0, 1.0], 1)]
    result = bench.BenchResult(rows, "fp32", {"cores": 2, "load_1min": load, "batch": 1})
    assert result.busy() is busy
    warned = "these timings are not to be trusted" in result.summary()
    assert warned is busy and (warned is ("not to be trusted" in str(result)))
    if busy:
        assert f"load {load} at or above the 2 cores" in result.summary()


def np_quantiles(values):
    import numpy as np

    return np.quantile(values, [0.25, 0.75])


FAKE = Recorder("int8", [])


@pytest.mark.parametrize(
    ("int8", "inputs", "threads", "error", "match"),
    [
        ({}, [X], [1], TypeError, "int8 must be a non-empty dict of engine -> int8 model"),
        ({"x86": None}, [X], [1], TypeError, r"'int8\[x86\]' must be a torch.nn.Module, got None"),
        ({"tpu": FAKE}, [X], [1], ValueError, r"engine must be one of .*; got 'tpu'"),
        ({"x86": FAKE}, [], [1], ValueError, "inputs and threads must each hold at least one"),
        ({"x86": FAKE}, [X], [0], ValueError, "threads must be an int in 1"),
        ({"x86": FAKE}, X, [1], TypeError, "inputs must be a list of input batches.*got Tensor"),
        ({"x86": FAKE}, [X], 2, TypeError, r"threads must be a list of thread counts .*got 2"),
    ],
)
def test_speedups_refuses_bad_arguments_before_timing_anything(int8, inputs, threads, error, match):
    log: list[str] = []
    with pytest.raises(error, match=match):
        bench.speedups(Recorder("fp32", log), int8, inputs, threads=threads, warmup=0, repeats=1)
    assert log == []
