"""Forward hooks attached for one block of code and always removed after it.

Several helpers look inside a model while it runs (the inputs of a layer, the outputs of
others, the order they run in). Each writes only its hook, what it records; `attached` puts
the hooks on and takes them off whatever happens, and `run` feeds the batches through.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

ForwardHook = Callable[[nn.Module, tuple, object], object]  # (module, args, output)
PreHook = Callable[[nn.Module, tuple], object]  # (module, args)


@contextlib.contextmanager
def attached(
    forward: Iterable[tuple[nn.Module, ForwardHook]] = (),
    pre: Iterable[tuple[nn.Module, PreHook]] = (),
    *,
    prepend: bool = False,
) -> Iterator[None]:
    """Inside the block, each `(module, hook)` of `forward` is a forward hook and each of `pre`
    a forward pre-hook; they are removed when the block ends, also on an error. With `prepend`,
    the forward hooks run before the module's own (e.g. an observer or fake quantizer that
    torch.ao's prepare attached), so they see the output those change."""
    handles = []
    try:
        for module, hook in pre:
            handles.append(module.register_forward_pre_hook(hook))
        for module, hook in forward:
            handles.append(module.register_forward_hook(hook, prepend=prepend))
        yield
    finally:
        for handle in handles:
            handle.remove()


def run(model: nn.Module, batches: Iterable[torch.Tensor], *, inference: bool = False) -> None:
    """`model(batch)` for every batch, without gradients (`torch.no_grad`: what the hooks keep
    may feed autograd later; with `inference`, `torch.inference_mode`: it may not)."""
    with torch.inference_mode() if inference else torch.no_grad():
        for batch in batches:
            model(batch)
