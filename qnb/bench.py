"""Latency and size of deployable models, measured one way everywhere (notebooks 05, 10).

`compare({"fp32": model, "int8": qmodel}, example)` times every model on the same input in one
process: warm-up runs, then `repeats` timed samples taken round-robin (the order reverses every
round, so slow drift of the machine hits every model alike), with the thread count and the
quantized engine set for the measurement and restored after. The engine may differ per model
(`engine={"int8 x86": "x86", "int8 qnnpack": "qnnpack"}`): it is set before each model's calls,
so one fp32 baseline is timed once, interleaved with the int8 model of every engine. It reports
per model the median time per call with its spread (p25-p75, min), the speedup over the
baseline with its spread (`paired`): the median and p25-p75 of the per-round paired ratios
(the baseline's sample over the model's sample of the same round, so drift that hits a whole
round cancels), and the serialized size. The result prints its conditions (threads, engine,
batch, torch, CPU and its int8 features) above the table, so a figure shown in a notebook never
loses them.

A model that still holds observers or fake-quant modules is refused (`deployable`): it
runs float code with extra work and says nothing about int8 speed.
"""

from __future__ import annotations

import gc
import html
import io
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.ao.quantization import FakeQuantizeBase
from torch.ao.quantization.observer import ObserverBase

from qnb import checks, env
from qnb import progress as bars  # `progress` is the argument that turns them on
from qnb.simulate import FakeQuant

__all__ = [
    "BenchResult",
    "Row",
    "Speedup",
    "deployable",
    "compare",
    "serialized_size",
    "size_on_disk",
    "speedups",
]

MIN_SAMPLE_NS = 1_000_000  # with inner=None, each timed sample lasts at least ~1 ms
MAX_INNER = 10_000  # ... but never more calls per sample than this

Example = torch.Tensor | Callable[[nn.Module], object]
Engines = str | Mapping[str, str] | None


# --- what may be timed ----------------------------------------------------------------------


def _fake_quant_types() -> tuple[type, ...]:
    types: tuple[type, ...] = (FakeQuantizeBase, FakeQuant)
    qat = sys.modules.get("torchao.quantization.qat")  # only loaded models can hold its modules
    base = getattr(qat, "FakeQuantizerBase", None)
    return types + (base,) if isinstance(base, type) else types


def deployable(model: nn.Module, name: str | None = None) -> nn.Module:
    """`model` itself if it holds no observer and no fake-quant module, else a ValueError naming
    the first such module's path and type (`name` labels the model in the message)."""
    label = f"model {name!r}" if name is not None else "model"
    checks.check_model(model, label)
    fake_quant = _fake_quant_types()
    found = [
        (path or "<root>", module)
        for path, module in model.named_modules()
        if isinstance(module, (ObserverBase, *fake_quant))
    ]
    if not found:
        return model
    path, module = found[0]
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    kind = type(module).__name__
    if isinstance(module, ObserverBase):
        raise ValueError(
            f"{label} still holds an observer at {path} ({kind}){more}: convert it before "
            "timing (torch.ao.quantization.convert); an observed model runs in float and "
            "measures the observers, not int8"
        )
    raise ValueError(
        f"{label} still holds a fake-quant module at {path} ({kind}){more}: a simulated model "
        "runs float arithmetic and measures accuracy, not latency; time the converted int8 "
        "model (torch.ao.quantization.convert) instead"
    )


# --- size -----------------------------------------------------------------------------------


def serialized_size(model: nn.Module) -> int:
    """Bytes of `torch.save(model.state_dict())`: weights, qparams and packed int8 params.

    Taught in notebook 05 (static_ptq)."""
    checks.check_model(model)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def size_on_disk(path: str | os.PathLike[str]) -> int:
    """Bytes of the file at `path` (for example a saved state dict).

    Taught in notebook 05 (static_ptq)."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path={os.fspath(path)!r} is not a file")
    return os.path.getsize(path)


# --- results --------------------------------------------------------------------------------


@dataclass
class Row:
    """One model's timed samples, in ms per call, and its serialized size."""

    name: str
    times_ms: list[float]
    calls_per_sample: int
    size_bytes: int | None = None
    engine: str | None = None  # the quantized engine set for this model (None: not set)

    def quantile(self, q: float) -> float:
        return float(np.quantile(self.times_ms, q))

    @property
    def median_ms(self) -> float:
        return self.quantile(0.5)


@dataclass(frozen=True)
class Speedup:
    """A speedup: the median and the p25-p75 (IQR) of the per-round paired time ratios."""

    value: float
    p25: float
    p75: float

    def __str__(self) -> str:
        return f"{self.value:.2f}x (IQR {self.p25:.2f}-{self.p75:.2f})"


@dataclass(repr=False)
class BenchResult:
    """Timings of several models under one set of conditions; see `compare`."""

    rows: list[Row]
    baseline: str
    conditions: dict[str, object] = field(default_factory=dict)

    def _row(self, name: str) -> Row:
        for row in self.rows:
            if row.name == name:
                return row
        known = ", ".join(repr(r.name) for r in self.rows)
        raise KeyError(f"name must be one of {known}, got {name!r}")

    def speedup(self, name: str) -> float:
        """How many times faster model `name` runs than the baseline (> 1: faster): the median
        of the per-round ratios baseline time / its time; see `paired` for the spread."""
        return self.paired(name).value

    def paired(self, name: str, baseline: str | None = None) -> Speedup:
        """Model `name` against `baseline` (None: the result's baseline): the median and the
        p25-p75 of the ratios baseline time / time of `name`, one per round (the two samples
        of a ratio were taken in the same round)."""
        base, row = self._row(self.baseline if baseline is None else baseline), self._row(name)
        ratios = np.asarray(base.times_ms) / np.asarray(row.times_ms)
        p25, median, p75 = np.quantile(ratios, [0.25, 0.5, 0.75])
        return Speedup(float(median), float(p25), float(p75))

    def median_ms(self, name: str) -> float:
        """Median time per call of model `name`, in milliseconds."""
        return self._row(name).median_ms

    def context(self) -> dict[str, object]:
        """The conditions of the measurement: threads, engine, batch, torch, CPU, runs, and
        the 1-minute load average before it (other work on the cores skews every figure)."""
        return dict(self.conditions)

    def busy(self) -> bool:
        """True when the 1-minute load average before the measurement was at or above the
        number of cores: other work then held the cores and these timings are not to be
        trusted (the summary says so). False when the load is below it or unknown."""
        load, cores = self.conditions.get("load_1min"), self.conditions.get("cores")
        return load is not None and cores is not None and load >= cores

    def table(self) -> pd.DataFrame:
        """One row per model: the engine set for it ("-": none), median, p25, p75 and min ms
        per call, speedup over the baseline (the median of the per-round paired ratios, with
        their p25-p75), size in bytes, calls per sample."""
        records = []
        for row in self.rows:
            speedup = self.paired(row.name)
            records.append(
                {
                    "model": row.name,
                    "engine": row.engine or "-",
                    "median_ms": row.median_ms,
                    "p25_ms": row.quantile(0.25),
                    "p75_ms": row.quantile(0.75),
                    "min_ms": min(row.times_ms),
                    "speedup": speedup.value,
                    "speedup_p25": speedup.p25,
                    "speedup_p75": speedup.p75,
                    "size_bytes": row.size_bytes,
                    "calls_per_sample": row.calls_per_sample,
                }
            )
        return pd.DataFrame.from_records(records).set_index("model")

    def summary(self) -> str:
        """The conditions as one line, to print next to any figure taken from this result."""
        c = self.conditions
        batch = "batch ?" if c.get("batch") is None else f"batch {c['batch']}"
        features = ", ".join(c.get("cpu_features") or []) or "no AVX2/AVX-512 int8 features"
        engine = c.get("engine")
        engine = "engine per model" if isinstance(engine, dict) else f"{engine} engine"
        return (
            f"{engine}, {c.get('threads')} thread(s) of {c.get('cores')} cores "
            f"(load {c.get('load_1min', '?')}), "
            f"{batch}, torch {c.get('torch')}, {c.get('cpu')} ({features}; int8 peak "
            f"{c.get('int8_peak_ratio')}x fp32); {c.get('warmup')} warm-up + {c.get('repeats')} "
            f"timed samples per model, interleaved; baseline {self.baseline!r}; "
            "times are ms per call (median, p25-p75)"
        ) + (
            f". WARNING: load {c.get('load_1min')} at or above the {c.get('cores')} cores: "
            "other work held the cores, these timings are not to be trusted"
            if self.busy()
            else ""
        )

    def __str__(self) -> str:
        with pd.option_context("display.float_format", "{:.4g}".format):
            return f"{self.summary()}\n{self.table().to_string()}"

    __repr__ = __str__  # a result shown in a text-only output reads like its HTML table

    def _repr_html_(self) -> str:
        table = self.table().to_html(float_format="{:.4g}".format)
        return f"<p><small>{html.escape(self.summary())}</small></p>\n{table}"


# --- measuring ------------------------------------------------------------------------------


def _check_models(models: object) -> dict[str, nn.Module]:
    if not isinstance(models, Mapping):
        raise TypeError(f"models must be a dict of name -> nn.Module, got {type(models).__name__}")
    if not models:
        raise ValueError("models must name at least one model, got an empty dict")
    checked = {}
    for name, model in models.items():
        if not isinstance(name, str):
            raise TypeError(f"models keys must be str names, got {name!r}")
        deployable(model, name)
        if model.training:
            raise ValueError(
                f"model {name!r} is in training mode: call .eval() before timing (batch norm "
                "and dropout behave differently in training)"
            )
        checked[name] = model
    return checked


def _check_example(example: object) -> tuple[Callable[[nn.Module], object], int | None]:
    """The call to time, and the batch size (dim 0 of a tensor example, else None)."""
    if isinstance(example, torch.Tensor):
        if example.dim() == 0:
            raise ValueError("example must be a batch with a leading batch dim, got a scalar")
        if example.is_floating_point() and not bool(torch.isfinite(example).all()):
            raise ValueError("example holds NaN or inf; time the models on finite input")
        return (lambda model: model(example)), int(example.shape[0])
    if callable(example):
        return example, None
    raise TypeError(
        "example must be an input tensor (passed as model(example)) or a callable "
        f"run(model), got {type(example).__name__}"
    )


def _check_engine(engine: object) -> str | None:
    if engine is None:
        return None
    try:
        return checks.check_engine(engine)
    except ValueError as error:
        raise ValueError(f"{error}; None here keeps the current engine") from None


def _check_engines(engine: object, names: list[str]) -> dict[str, str | None]:
    """The engine each model is run under: one for all, one per named model, or None (the
    model keeps the engine that is current when timing starts: a float model needs none)."""
    if engine is None or isinstance(engine, str):
        return dict.fromkeys(names, _check_engine(engine))
    if not isinstance(engine, Mapping):
        raise TypeError(
            "engine must be None, an engine name or a dict of model name -> engine, "
            f"got {type(engine).__name__}"
        )
    unknown = [key for key in engine if key not in names]
    if unknown:
        known = ", ".join(map(repr, names))
        raise ValueError(f"engine names model {unknown[0]!r}, which is not one of {known}")
    return {name: _check_engine(engine.get(name)) for name in names}


def _check_threads(threads: object) -> int | None:
    if threads is None:
        return None
    return checks.check_int("threads", threads, 1, os.cpu_count() or 1)


def _sample_ns(run: Callable[[nn.Module], object], model: nn.Module, calls: int) -> int:
    start = time.perf_counter_ns()
    for _ in range(calls):
        run(model)
    return time.perf_counter_ns() - start


def _calls_per_sample(run: Callable[[nn.Module], object], model: nn.Module) -> int:
    """Enough calls that a sample lasts >= MIN_SAMPLE_NS, from the fastest of <= 3 calls."""
    once = _sample_ns(run, model, 1)
    if once < MIN_SAMPLE_NS:  # a fast model: two more calls, so one slow call cannot mislead
        once = min(once, _sample_ns(run, model, 1), _sample_ns(run, model, 1))
    return min(MAX_INNER, max(1, math.ceil(MIN_SAMPLE_NS / max(once, 1))))


def _rounds(names: list[str], repeats: int) -> Iterable[list[str]]:
    """The order of each round: as given, then reversed, alternately."""
    for r in range(repeats):
        yield names if r % 2 == 0 else names[::-1]


def _measure(
    models: dict[str, nn.Module],
    engines: dict[str, str | None],
    run: Callable[[nn.Module], object],
    warmup: int,
    repeats: int,
    inner: int | None,
    progress: bool | None,
) -> dict[str, tuple[list[float], int]]:
    """Per model: the timed samples in ms per call, and the calls per sample. Each model's
    engine is set before its calls (outside the timed span)."""
    names = list(models)
    current = names[0]
    start = torch.backends.quantized.engine

    def select(name: str) -> nn.Module:
        wanted = engines[name] or start
        if torch.backends.quantized.engine != wanted:
            torch.backends.quantized.engine = wanted
        return models[name]

    try:
        for order in _rounds(names, warmup):
            for current in order:
                run(select(current))
        calls = {}
        for current in names:
            calls[current] = inner or _calls_per_sample(run, select(current))
        times: dict[str, list[float]] = {name: [] for name in names}
        rounds = bars.bar_as_asked(_rounds(names, repeats), progress, desc="timing", total=repeats)
        for order in rounds:
            for current in order:
                model = select(current)
                ns = _sample_ns(run, model, calls[current])
                times[current].append(ns / calls[current] / 1e6)
    except Exception as exc:
        exc.add_note(f"(raised while qnb.bench.compare ran model {current!r})")
        raise
    return {name: (times[name], calls[name]) for name in names}


def compare(
    models: Mapping[str, nn.Module],
    example: Example,
    *,
    baseline: str | None = None,
    warmup: int = 3,
    repeats: int = 20,
    threads: int | None = None,
    engine: Engines = None,
    inner: int | None = None,
    progress: bool | None = None,
) -> BenchResult:
    """Time each model of `models` (name -> eval-mode nn.Module) on the same input.

    `example` is the input tensor (each call is `model(example)`; its dim 0 is the batch size
    reported) or a callable `run(model)` for models that need more than one tensor. Every
    model gets `warmup` untimed calls, then `repeats` timed samples, taken round-robin in an
    order that reverses every round, under `torch.inference_mode()`. A sample is `inner`
    calls (None: enough calls that a sample lasts >= 1 ms, sized by up to 3 extra calls) and is
    reported as ms per call. `threads` (1..cores; None: the current count) and `engine` hold
    for the measurement only and are restored after, also on error. `engine` is a quantized
    engine for every model, or a dict of model name -> engine (set before each of that model's
    calls; models it does not name, such as float models, keep the current engine and show no
    engine in the table), or None (the current engine): each int8 model must run under the
    engine it was converted with. `speedup` is the median time
    of the per-round ratios of `baseline`'s time (default: the first model) over each model's;
    `paired` adds their p25-p75.
    Models holding observers or fake-quant modules, or in training mode, are refused.

    Taught in notebook 05 (static_ptq).
    """
    models = _check_models(models)
    run, batch = _check_example(example)
    baseline = next(iter(models)) if baseline is None else baseline
    if baseline not in models:
        known = ", ".join(repr(k) for k in models)
        raise ValueError(f"baseline must be None or one of {known}, got {baseline!r}")
    warmup = checks.check_int("warmup", warmup, 0)
    repeats = checks.check_int("repeats", repeats, 1)
    inner = None if inner is None else checks.check_int("inner", inner, 1, MAX_INNER)
    threads = _check_threads(threads)
    engines = _check_engines(engine, list(models))
    progress = bars.check_enabled(progress)

    sizes = {name: serialized_size(model) for name, model in models.items()}
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    old_threads, old_engine = torch.get_num_threads(), torch.backends.quantized.engine
    gc_was_enabled = gc.isenabled()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        info = env.report()
        gc.disable()
        with torch.inference_mode():
            measured = _measure(models, engines, run, warmup, repeats, inner, progress)
    finally:
        if gc_was_enabled:
            gc.enable()
        torch.set_num_threads(old_threads)
        torch.backends.quantized.engine = old_engine

    rows = [Row(n, t, calls, sizes[n], engines[n]) for n, (t, calls) in measured.items()]
    if isinstance(engine, Mapping):
        shown: object = {n: e for n, e in engines.items() if e is not None}
    else:
        shown = engines[rows[0].name] or info["quantized_engine"]
    conditions = {
        "threads": info["threads"],
        "engine": shown,
        "batch": batch,
        "torch": info["torch"],
        "cpu": info["cpu"],
        "cpu_capability": info["cpu_capability"],
        "cpu_features": info["cpu_features"],
        "int8_peak_ratio": info["int8_peak_ratio"],
        "cores": info["cores"],
        "load_1min": load,
        "warmup": warmup,
        "repeats": repeats,
    }
    return BenchResult(rows, baseline, conditions)


def speedups(
    fp32: nn.Module,
    int8: Mapping[str, nn.Module],
    inputs: Iterable[torch.Tensor],
    *,
    threads: Iterable[int],
    warmup: int = 3,
    repeats: int = 20,
    progress: bool | None = None,
) -> pd.DataFrame:
    """fp32 against the int8 model of every engine, at every thread count x input: one row per
    engine x thread count x batch.

    `int8` maps each engine to the int8 model converted for it; `inputs` holds one input batch
    per batch size. At each thread count and input, one `compare` call times fp32 once,
    round-robin with every engine's int8 model (each under its own engine), so all engines of
    a setting share one fp32 baseline and its samples. Rows: engine, threads, batch, fp32_ms,
    int8_ms (medians), speedup (median of the per-round paired ratios, with their p25-p75),
    fp32_bytes, int8_bytes, load_1min.

    Taught in notebooks 05 (static_ptq) and 10 (cpu_deployment).
    """
    if not isinstance(int8, Mapping) or not int8:
        raise TypeError(f"int8 must be a non-empty dict of engine -> int8 model, got {int8!r}")
    named = {f"int8[{e}]": m for e, m in int8.items()}
    _check_models({"fp32": fp32, **named})
    for engine in int8:
        _check_engine(engine)
    if isinstance(inputs, torch.Tensor) or not isinstance(inputs, Iterable):
        raise TypeError(
            "inputs must be a list of input batches, one per batch size (wrap a single batch "
            f"in a list), got {type(inputs).__name__}"
        )
    if not isinstance(threads, Iterable):
        raise TypeError(f"threads must be a list of thread counts such as [1, 2], got {threads!r}")
    inputs, threads = list(inputs), [_check_threads(t) for t in threads]
    if not inputs or not threads:
        raise ValueError("inputs and threads must each hold at least one value")
    engines = {f"int8[{e}]": e for e in int8}
    grid = [(n, x) for n in threads for x in inputs]
    rows = []
    for n, x in bars.bar_as_asked(grid, bars.check_enabled(progress), desc="fp32 vs int8"):
        result = compare(
            {"fp32": fp32, **named},
            x,
            threads=n,
            engine=engines,
            warmup=warmup,
            repeats=repeats,
            progress=False,
        )
        table = result.table()
        for engine in int8:
            name = f"int8[{engine}]"
            rows.append(
                {
                    "engine": engine,
                    "threads": n,
                    "batch": result.conditions["batch"],
                    "fp32_ms": table.at["fp32", "median_ms"],
                    "int8_ms": table.at[name, "median_ms"],
                    "speedup": table.at[name, "speedup"],
                    "speedup_p25": table.at[name, "speedup_p25"],
                    "speedup_p75": table.at[name, "speedup_p75"],
                    "fp32_bytes": table.at["fp32", "size_bytes"],
                    "int8_bytes": table.at[name, "size_bytes"],
                    "load_1min": result.conditions["load_1min"],
                }
            )
    rows.sort(key=lambda row: list(int8).index(row["engine"]))  # stable: engine, then setting
    return pd.DataFrame.from_records(rows)
