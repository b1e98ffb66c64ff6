"""qnb.hooks: hooks attached for one block, removed after it, also on an error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qnb import hooks


def counts(module: nn.Module) -> tuple[int, int]:
    return len(module._forward_hooks), len(module._forward_pre_hooks)


def test_hooks_see_the_run_and_are_removed_after_it():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    inputs, outputs = [], []
    with hooks.attached([(model[1], lambda _m, _a, out: outputs.append(out))],
                        pre=[(model[0], lambda _m, args: inputs.append(args[0]))]):
        assert counts(model[1]) == (1, 0) and counts(model[0]) == (0, 1)
        hooks.run(model, [torch.ones(2, 3), torch.zeros(5, 3)])
    assert [len(x) for x in inputs] == [2, 5] and [len(x) for x in outputs] == [2, 5]
    assert counts(model[0]) == counts(model[1]) == (0, 0)
    model(torch.ones(1, 3))
    assert len(inputs) == 2  # nothing recorded after the block


def test_hooks_are_removed_when_the_block_fails():
    model = nn.Linear(3, 4)
    with pytest.raises(RuntimeError, match="shape"), hooks.attached([(model, lambda *_: None)]):
        hooks.run(model, [torch.ones(2, 7)])
    assert counts(model) == (0, 0)


def test_prepend_sees_the_output_before_the_modules_own_hooks():
    model = nn.Linear(2, 2)
    model.register_forward_hook(lambda _m, _a, out: out * 0)  # e.g. a fake quantizer
    seen = []
    with hooks.attached([(model, lambda _m, _a, out: seen.append(out))], prepend=True):
        hooks.run(model, [torch.ones(1, 2)])
    assert seen[0].abs().sum() > 0


def test_run_without_gradients_keeps_tensors_usable_by_autograd_unless_inference():
    model = nn.Linear(2, 2)
    kept = []
    with hooks.attached([(model, lambda _m, _a, out: kept.append(out))]):
        hooks.run(model, [torch.ones(1, 2)])
        hooks.run(model, [torch.ones(1, 2)], inference=True)
    assert not kept[0].requires_grad and not kept[0].is_inference()
    assert kept[1].is_inference()
