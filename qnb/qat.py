"""Quantization-aware training (QAT) with eager `torch.ao.quantization`, at 2..8 bits.

`qat(model, train_loader, weight_bits=4, act_bits=4)` runs the standard recipe on a copy of a
trained float model (any eval-able model with a QuantStub: the workbook's CNNs, torchvision's
quantizable ResNet-18, ...): fuse conv-bn-relu for QAT (`fuse_modules_qat` keeps batch norm,
so `ConvBnReLU2d` folds it into the fake-quantized weights during training), `prepare_qat`
with fake quantization at the asked bit widths (weights signed, symmetric, per output channel;
activations unsigned, affine, per tensor; both with moving-average min/max observers), then
fine-tune briefly with a small learning rate and an optional seeded augmentation. After
`freeze_bn_after` steps batch norm stops updating its running statistics (and normalises with
them, as inference will); after `freeze_observers_after` steps the quantization ranges stop
moving and the weights adapt to fixed grids. The straight-through estimator carries gradients
through the rounding.

At W8A8 the result is converted into a real int8 model on the chosen engine (or, with
`convert=False`, returned fake-quantized, for `torch.ao.quantization.convert` to be shown by
the caller). Below 8 bits it stays a simulation: PyTorch's CPU engines have no int2..int7
kernels, so the fine-tuned model keeps its fake quantization (observers off, eval mode) and
`report.simulated` is True.

At W8A8 on x86/fbgemm the activations follow PyTorch's own default QAT qconfig for those
engines: `reduce_range`, i.e. 7-bit activations 0..127 (which keeps the int16 accumulation of
CPUs without VNNI from overflowing). Fake quantization clamps to 0..127 like the observers'
scales; the converted int8 kernels clamp to 0..255, so the two differ only on values above the
trained range (measured: the same test accuracy). qnnpack/onednn use the full 0..255.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Sized
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.ao.nn.intrinsic.qat import freeze_bn_stats
from torch.ao.quantization import (
    FakeQuantize,
    QConfig,
    convert,
    disable_observer,
    get_default_qconfig,
    prepare_qat,
)
from torch.ao.quantization.fake_quantize import FakeQuantizeBase
from torch.ao.quantization.observer import (
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
)

from qnb import checks, eager, models
from qnb.calibration import batch_inputs, calibrate
from qnb.progress import bar_as_asked, check_enabled

__all__ = [
    "QATReport",
    "qat_qconfig",
    "default_lr",
    "prepare",
    "fake_quants",
    "observers_enabled",
    "bn_frozen",
    "qat",
]

MIN_BITS, MAX_BITS = 2, 8
SIMULATED = (
    "simulated: PyTorch's CPU engines have no kernels below 8 bits, so this QAT model keeps "
    "its fake quantization (float kernels computing on {w}-bit weights and {a}-bit activations)"
)


@dataclass
class QATReport:
    """What `qat` did: bit widths, engine, the fine-tuning run and its history."""

    weight_bits: int
    act_bits: int
    engine: str
    simulated: bool
    message: str
    qconfig: str
    epochs: int
    steps: int
    lr: float
    freeze_bn_after: int
    freeze_observers_after: int
    bn_frozen_at: int | None = None  # the step at which it happened, None if it did not
    observers_frozen_at: int | None = None
    fake_quant_acc: float | None = None  # the fine-tuned fake-quantized model on eval_loader
    int8_acc: float | None = None  # the converted int8 model on eval_loader (8 bits only)
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)

    def table(self):
        """The history (one row per logged step) as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.history)

    def __str__(self) -> str:
        kind = "simulated" if self.simulated else f"int8 on {self.engine}"
        accs = (
            [f"fake-quant acc {self.fake_quant_acc:.4f}"] if self.fake_quant_acc is not None else []
        )
        if self.int8_acc is not None:
            accs.append(f"int8 acc {self.int8_acc:.4f}")
        return "\n".join(
            [
                f"QAT W{self.weight_bits}A{self.act_bits} ({kind}): epochs {self.epochs}, "
                f"{self.steps} steps, lr {self.lr:g}, {self.seconds:.1f} s",
                f"batch norm frozen at step {self.bn_frozen_at}, observers frozen at step "
                f"{self.observers_frozen_at}",
                self.qconfig,
                ", ".join(accs),
                self.message,
            ]
        )


# --- validation ---------------------------------------------------------------------------


def _check_bits(name: str, bits: object) -> int:
    return checks.check_bits(name, bits, MIN_BITS, MAX_BITS)


def _check_steps(name: str, value: object) -> int | None:
    return None if value is None else checks.check_int(name, value, 0)


def _check_qat_model(model: object) -> nn.Module:
    model = eager.check_float_model(model)
    eager.check_cpu_model(model)
    return eager.check_quant_stub(model)


def _check_train_loader(loader: object) -> Iterable:
    """A DataLoader (or any sized iterable) of `(input, target)` batches."""
    loader = checks.check_calib(loader, "train_loader")
    if not isinstance(loader, Sized) or len(loader) == 0:
        raise ValueError(
            "train_loader must be a DataLoader (or a list) of (input, target) batches with at "
            f"least one batch, got {type(loader).__name__}"
            + (" of length 0" if isinstance(loader, Sized) else " without a length")
        )
    first = next(iter(loader))
    if not (isinstance(first, list | tuple) and len(first) >= 2):
        raise TypeError(
            "train_loader must yield (input, target) pairs (QAT minimises a loss on labels), "
            f"got a batch of type {type(first).__name__}"
        )
    return loader


def _check_callable(name: str, value: object) -> Callable | None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be a function or None, got {type(value).__name__}")
    return value


# --- qconfig --------------------------------------------------------------------------------


def _reduce_range(engine: str, weight_bits: int, act_bits: int) -> bool:
    """The engine's 7-bit activation scales apply to a real int8 model only."""
    if weight_bits < 8 or act_bits < 8:
        return False
    return bool(get_default_qconfig(engine).activation().reduce_range)


def qat_qconfig(weight_bits: int = 8, act_bits: int = 8, engine: str | None = None) -> QConfig:
    """The QAT qconfig: fake quantization at `weight_bits` (signed, symmetric, per output
    channel) and `act_bits` (unsigned, affine, per tensor), moving-average min/max observers.
    At W8A8 on x86/fbgemm activations use the engine's `reduce_range` (see the module doc).
    `engine=None`: this machine's engine.

    Taught in notebook 08 (quantization_aware_training)."""
    weight_bits = _check_bits("weight_bits", weight_bits)
    act_bits = _check_bits("act_bits", act_bits)
    engine = checks.check_engine(engine)
    activation = FakeQuantize.with_args(
        observer=MovingAverageMinMaxObserver,
        quant_min=0,
        quant_max=2**act_bits - 1,
        dtype=torch.quint8,
        qscheme=torch.per_tensor_affine,
        reduce_range=_reduce_range(engine, weight_bits, act_bits),
    )
    weight = FakeQuantize.with_args(
        observer=MovingAveragePerChannelMinMaxObserver,
        quant_min=-(2 ** (weight_bits - 1)),
        quant_max=2 ** (weight_bits - 1) - 1,
        dtype=torch.qint8,
        qscheme=torch.per_channel_symmetric,
        ch_axis=0,
    )
    return QConfig(activation=activation, weight=weight)


def _describe(weight_bits: int, act_bits: int, reduce_range: bool) -> str:
    act = "0..127 (reduce_range)" if reduce_range else f"0..{2**act_bits - 1}"
    half = 2 ** (weight_bits - 1)
    return (
        f"weights: FakeQuantize(MovingAveragePerChannelMinMaxObserver), {weight_bits} bits "
        f"-{half}..{half - 1}, per-channel symmetric; activations: "
        f"FakeQuantize(MovingAverageMinMaxObserver), {act_bits} bits {act}, per-tensor affine"
    )


def default_lr(weight_bits: int, act_bits: int) -> float:
    """The fine-tuning learning rate `qat` uses when none is given: 1e-4 at W8A8, where the
    float optimum is a rounding error away; 1e-3 at 3..7 bits and 3e-3 at 2 bits, where the
    weights must move further. At 2 bits this equals the 3e-3 the plain CNN was trained with
    (`models.TRAINING`); above, it is 3x (3..7 bits) and 30x (8 bits) lower.

    A rule of thumb, not a tuned value: it was picked in an earlier version of the workbook on
    500 MNIST validation digits, and even there its own means did not favour 1e-3 at W3A3
    (3e-4 / 1e-3 / 3e-3: 95.2 / 91.3 / 94.9%). A rate that matters is chosen on the validation
    split for the model, bits and fine-tuning budget at hand and passed as `lr`: notebook 08
    does that per rung and prints the validation accuracy of every candidate."""
    if min(weight_bits, act_bits) >= 8:
        return 1e-4
    return 3e-3 if min(weight_bits, act_bits) <= 2 else 1e-3


# --- preparing, freezing, evaluating ----------------------------------------------------------


def prepare(model: nn.Module, qconfig: QConfig) -> nn.Module:
    """A train-mode copy of `model`, fused for QAT and prepared with `qconfig`.

    Taught in notebook 08 (quantization_aware_training)."""
    prepared = eager.fuse(copy.deepcopy(model).train(), qat=True)
    prepared.qconfig = qconfig
    return prepare_qat(prepared)


def fake_quants(model: nn.Module) -> list[FakeQuantizeBase]:
    """Every fake-quantize module of a prepared model (weights and activations)."""
    return [m for m in model.modules() if isinstance(m, FakeQuantizeBase)]


def observers_enabled(model: nn.Module) -> bool:
    """True if any fake-quantize module of `model` still updates its range."""
    return any(bool(fq.observer_enabled[0]) for fq in fake_quants(model))


def bn_frozen(model: nn.Module) -> bool:
    """True if every QAT conv-bn module of `model` has frozen batch-norm statistics."""
    convbns = [m for m in model.modules() if hasattr(m, "freeze_bn")]
    return bool(convbns) and all(m.freeze_bn for m in convbns)


@contextmanager
def _observers_paused(model: nn.Module):
    """Evaluate without moving the ranges (observers record in eval mode too)."""
    saved = [(fq, fq.observer_enabled.clone()) for fq in fake_quants(model)]
    model.apply(disable_observer)
    try:
        yield
    finally:
        for fq, flag in saved:
            fq.observer_enabled.copy_(flag)


def _evaluate(model: nn.Module, loader: Iterable) -> float:
    with _observers_paused(model):
        return models.evaluate(model, loader)


# --- the fine-tuning loop -------------------------------------------------------------------


@dataclass
class _Run:
    """Mutable state of one fine-tuning run."""

    model: nn.Module
    report: QATReport
    eval_loader: Iterable | None
    step: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0

    def log(self, steps_per_epoch: int, lr: float) -> None:
        row = {
            "step": self.step,
            "epoch": self.step / steps_per_epoch,
            "lr": lr,
            "loss": self.loss_sum / self.seen if self.seen else math.nan,
            "train_acc": self.correct / self.seen if self.seen else math.nan,
            "bn_frozen": bn_frozen(self.model),
            "observers_frozen": not observers_enabled(self.model),
        }
        if self.eval_loader is not None:
            row["eval_acc"] = _evaluate(self.model, self.eval_loader)
        self.report.history.append(row)
        self.loss_sum, self.correct, self.seen = 0.0, 0, 0

    def freeze(self) -> None:
        r = self.report
        if r.bn_frozen_at is None and self.step >= r.freeze_bn_after:
            self.model.apply(freeze_bn_stats)
            r.bn_frozen_at = self.step
        if r.observers_frozen_at is None and self.step >= r.freeze_observers_after:
            self.model.apply(disable_observer)
            r.observers_frozen_at = self.step


def _fine_tune(
    run: _Run,
    loader,
    *,
    epochs: int,
    lr: float,
    augment: Callable | None,
    loss_fn: Callable,
    seed: int,
    log_every: int,
    progress: bool | None,
) -> None:
    model, total = run.model, epochs * len(loader)
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(params, lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
        bar = bar_as_asked(
            range(total), progress, desc=f"QAT W{run.report.weight_bits}A{run.report.act_bits}"
        )
        batches = iter(())
        run.freeze()  # freezing after 0 steps: from the start
        for _ in bar:
            if run.step % len(loader) == 0:
                batches = iter(loader)
            images, labels = next(batches)
            model.train()
            opt.zero_grad()
            logits = model(images if augment is None else augment(images, gen))
            loss = loss_fn(logits, labels)
            loss.backward()
            opt.step()
            sched.step()
            run.step += 1
            run.freeze()
            run.loss_sum += loss.item() * len(labels)
            run.correct += (logits.argmax(1) == labels).sum().item()
            run.seen += len(labels)
            if run.step % log_every == 0 or run.step == total:
                run.log(len(loader), opt.param_groups[0]["lr"])
                if hasattr(bar, "set_postfix"):
                    last = run.report.history[-1]
                    shown = {k: round(last[k], 4) for k in ("loss", "eval_acc") if k in last}
                    bar.set_postfix(shown, refresh=False)  # redrawn at the bar's own pace


# --- the pipeline ---------------------------------------------------------------------------


def _convert(model: nn.Module, engine: str, example: torch.Tensor) -> nn.Module:
    """The real int8 model on `engine` (set process-wide and left set, as in qnb.ptq)."""
    with eager.engine_for_building(engine):
        int8 = convert(copy.deepcopy(model).eval())
        eager.first_int8_run(int8, example)
    recipe = {
        "engine": engine,
        "per_channel": True,
        "act_method": "qat (moving-average min/max)",
        "reduce_range": _reduce_range(engine, 8, 8),
        "qat": True,
    }
    return eager.mark_int8(int8, engine, recipe)


def qat(
    model: nn.Module,
    train_loader: Iterable,
    *,
    weight_bits: int = 8,
    act_bits: int = 8,
    epochs: int = 2,
    lr: float | None = None,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    loss_fn: Callable | None = None,
    freeze_bn_after: int | None = None,
    freeze_observers_after: int | None = None,
    engine: str | None = None,
    seed: int = 0,
    calib: Iterable | None = None,
    eval_loader: Iterable | None = None,
    log_every: int | None = None,
    progress: bool | None = None,
    convert: bool = True,
) -> tuple[nn.Module, QATReport]:
    """Fine-tune a fake-quantized copy of the trained float `model`; return it and a report.

    `model`: any eval-able float model with a QuantStub (fused with its `fuse_groups()` or
    `fuse_model()` if it has one). `train_loader`: a DataLoader (or list) of `(input, target)`
    batches; its order is its own (seed it there). `weight_bits`, `act_bits`: 2..8. `epochs`
    over `train_loader`, Adam at `lr` (None: `default_lr`) with cosine decay, minimising
    `loss_fn(logits, target)` (default cross-entropy); `augment(inputs, generator)` (optional,
    e.g. `qnb.models.random_shift(2)`) is applied to each training batch with a generator seeded
    by `seed` (the global RNG is left as it was); the fine-tuning runs on `models.TRAIN_THREADS`
    threads, so the same inputs give the same model on any core count of the same CPU.
    `freeze_bn_after`, `freeze_observers_after`: optimizer steps after which
    batch-norm statistics / quantization ranges stop updating (0: from the start; default: after
    half / three quarters of the steps). `calib` (optional, batches or `(input, target)` pairs)
    warms up the observers before the first step, which also gives the history a step-0 row.
    `eval_loader` (optional) is evaluated every `log_every` steps (default: about 10 rows per
    run) for the training curves in `report.history`, and gives `report.fake_quant_acc` and
    `report.int8_acc`. At W8A8 the result is a real int8 model on `engine` (None: this
    machine's; set process-wide); below 8 bits, or with `convert=False`, the fake-quantized
    model in eval mode with its observers off and batch norm frozen (`report.simulated`), which
    `torch.ao.quantization.convert` turns into the int8 model at W8A8 (set
    `torch.backends.quantized.engine = engine` first: the qconfig was built for it). The
    caller's model is not changed.

    Taught in notebook 08 (quantization_aware_training)."""
    started = time.perf_counter()
    model = _check_qat_model(model)
    loader = _check_train_loader(train_loader)
    weight_bits = _check_bits("weight_bits", weight_bits)
    act_bits = _check_bits("act_bits", act_bits)
    engine = checks.check_engine(engine)
    qconfig = qat_qconfig(weight_bits, act_bits, engine)
    epochs = checks.check_int("epochs", epochs, 1)
    lr = default_lr(weight_bits, act_bits) if lr is None else checks.check_positive("lr", lr)
    augment = _check_callable("augment", augment)
    loss_fn = _check_callable("loss_fn", loss_fn) or nn.CrossEntropyLoss()
    seed = checks.check_int("seed", seed, 0)
    freeze_bn_after = _check_steps("freeze_bn_after", freeze_bn_after)
    freeze_observers_after = _check_steps("freeze_observers_after", freeze_observers_after)
    log_every = _check_steps("log_every", log_every)
    if log_every == 0:
        raise ValueError("log_every must be an int >= 1 or None, got 0")
    if freeze_observers_after == 0 and calib is None:
        raise ValueError(
            "freeze_observers_after=0 freezes the quantization ranges before they saw any data: "
            "pass calib (batches to warm up the observers) or freeze after >= 1 steps"
        )
    if calib is not None:
        calib = checks.check_calib(calib)
    if eval_loader is not None:
        eval_loader = checks.as_reusable(eval_loader, "eval_loader")
    progress = check_enabled(progress)
    convert = checks.check_bool("convert", convert)
    total = epochs * len(loader)
    report = _new_report(weight_bits, act_bits, engine, epochs, total, lr, convert)
    report.freeze_bn_after = _or_default(freeze_bn_after, total, 0.5)
    report.freeze_observers_after = _or_default(freeze_observers_after, total, 0.75)
    prepared = prepare(model, qconfig)
    run = _Run(prepared, report, eval_loader)
    if calib is not None:
        with _bn_eval(prepared):
            calibrate(prepared, calib, desc="QAT observer warm-up")
        run.log(len(loader), lr)
    log_every = log_every or max(1, total // 10)
    with models.on_train_threads():  # the same fine-tuned model on any core count
        _fine_tune(
            run,
            loader,
            epochs=epochs,
            lr=lr,
            augment=augment,
            loss_fn=loss_fn,
            seed=seed,
            log_every=log_every,
            progress=progress,
        )
    prepared.apply(disable_observer)
    prepared.apply(freeze_bn_stats)
    prepared.eval()
    if eval_loader is not None:
        report.fake_quant_acc = report.history[-1]["eval_acc"]  # logged after the last step
    result = prepared
    if not report.simulated:
        result = _convert(prepared, engine, example=batch_inputs(next(iter(loader))))
        if eval_loader is not None:
            report.int8_acc = models.evaluate(result, eval_loader)
    report.seconds = time.perf_counter() - started
    return result, report


def _new_report(
    weight_bits: int, act_bits: int, engine: str, epochs: int, steps: int, lr: float,
    convert: bool = True,
) -> QATReport:
    simulated = weight_bits < 8 or act_bits < 8 or not convert
    if weight_bits < 8 or act_bits < 8:
        message = SIMULATED.format(w=weight_bits, a=act_bits)
    elif not convert:
        message = (
            "not converted (convert=False): the fake-quantized W8A8 model; "
            f"torch.ao.quantization.convert makes it a real int8 model on engine {engine!r}"
        )
    else:
        message = f"converted to a real int8 model on engine {engine!r}"
    reduce_range = _reduce_range(engine, weight_bits, act_bits)
    return QATReport(
        weight_bits=weight_bits,
        act_bits=act_bits,
        engine=engine,
        simulated=simulated,
        message=message,
        qconfig=_describe(weight_bits, act_bits, reduce_range),
        epochs=epochs,
        steps=steps,
        lr=lr,
        freeze_bn_after=0,
        freeze_observers_after=0,
    )


def _or_default(steps: int | None, total: int, fraction: float) -> int:
    """`steps`, or by default that fraction of the `total` steps (at least 1)."""
    return max(1, round(total * fraction)) if steps is None else steps


@contextmanager
def _bn_eval(model: nn.Module):
    """Eval mode for a warm-up pass: batch norm normalises with its running statistics."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
