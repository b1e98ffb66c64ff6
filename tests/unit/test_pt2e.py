"""qnb.pt2e: export -> prepare_pt2e / convert_pt2e (X86InductorQuantizer) -> compile."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qnb import pt2e
from qnb.bench import deployable, serialized_size


class Block(nn.Module):
    """ResNet's BasicBlock in small: one `self.relu` called twice, conv-bn + residual add."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + x)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = Block()
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(torch.relu(self.stem(x))).mean((2, 3)))


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    torch.manual_seed(0)
    return Tiny().eval()


@pytest.fixture(scope="module")
def example() -> torch.Tensor:
    return torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def _calib(n: int = 4) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    return [torch.randn(4, 3, 16, 16, generator=gen) for _ in range(n)]


def _targets(gm: torch.fx.GraphModule) -> list[str]:
    return [str(n.target) for n in gm.graph.nodes if n.op == "call_function"]


def test_shared_modules_names_the_relu_called_twice(tiny, example):
    assert pt2e.shared_modules(tiny, example) == {"block.relu": 2}


def test_non_strict_export_fails_in_prepare_on_the_shared_relu(tiny, example):
    # The failure the workaround exists for (torch 2.14.1 + torchao 0.18.0).
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    exported = pt2e.export_model(tiny, example, strict=False)
    with pytest.raises(ValueError, match="Input partition has more than one output node"):
        prepare_pt2e(exported, pt2e.x86_quantizer())


def test_strict_export_is_what_makes_prepare_pass(tiny, example):
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    prepared = prepare_pt2e(pt2e.export_model(tiny, example, strict=True), pt2e.x86_quantizer())
    observers = [m for m in prepared.modules() if type(m).__name__.endswith("Observer")]
    assert len(observers) >= 4
    # conv -> add -> relu is annotated as one fused pattern: no observer inside it
    (add,) = [n for n in prepared.graph.nodes if n.target == torch.ops.aten.add.Tensor]
    assert add.args[0].target == torch.ops.aten.conv2d.default
    (user,) = add.users
    assert user.target == torch.ops.aten.relu.default


def test_quantize_pt2e_output_close_to_float(tiny, example):
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    q = pt2e.quantize_pt2e(tiny, example, _calib())
    assert isinstance(q, torch.fx.GraphModule)
    assert not q.training
    q.eval()  # allowed on the converted graph (torch refuses it on a bare exported module)
    deployable(q)
    targets = _targets(q)
    assert any("quantize_per_tensor" in t for t in targets)
    assert any("dequantize_per_channel" in t for t in targets)
    with torch.no_grad():
        ref, out = tiny(example), q(example)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()
    for k, v in tiny.state_dict().items():  # the float model is left as it was
        assert torch.equal(v, before[k])


def test_quantize_pt2e_accepts_pairs_and_caps_batches(tiny, example):
    pairs = [(x, torch.zeros(4, dtype=torch.long)) for x in _calib(3)]
    q = pt2e.quantize_pt2e(tiny, example, pairs, num_batches=2)
    with torch.no_grad():
        assert q(example).shape == (4, 4)


def test_quantize_pt2e_per_tensor_weights(tiny, example):
    q = pt2e.quantize_pt2e(tiny, example, _calib(2), is_per_channel=False)
    targets = _targets(q)
    assert not any("dequantize_per_channel" in t for t in targets)
    with torch.no_grad():
        ref, out = tiny(example), q(example)
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()


def test_quantize_pt2e_refuses_train_mode(example):
    model = Tiny().train()
    with pytest.raises(ValueError, match="train mode.*eval"):
        pt2e.quantize_pt2e(model, example, _calib(1))


@pytest.mark.parametrize(
    ("example", "error", "match"),
    [
        ([1.0, 2.0], TypeError, "example must be a float torch.Tensor, got list"),
        (torch.zeros(4, 3, 16, 16, dtype=torch.long), TypeError, "float torch.Tensor.*int64"),
        (torch.full((4, 3, 16, 16), float("inf")), ValueError, "example holds NaN or inf"),
    ],
)
def test_quantize_pt2e_refuses_bad_example(tiny, example, error, match):
    with pytest.raises(error, match=match):
        pt2e.quantize_pt2e(tiny, example, _calib(1))


def test_quantize_pt2e_refuses_empty_or_bad_calib(tiny, example):
    with pytest.raises(ValueError, match="calib yielded no batches"):
        pt2e.quantize_pt2e(tiny, example, [])
    with pytest.raises(TypeError, match="calib must be a DataLoader"):
        pt2e.quantize_pt2e(tiny, example, example)
    with pytest.raises(TypeError, match="calib must yield input tensors"):
        pt2e.quantize_pt2e(tiny, example, ["not a tensor"])


def test_quantize_pt2e_refuses_calib_of_another_shape(tiny, example):
    # export specializes the graph to the example's shape (a guard checks it on every call)
    with pytest.raises(ValueError, match=r"calib batch has shape \(2, 3, 16, 16\).*drop_last"):
        pt2e.quantize_pt2e(tiny, example, [torch.randn(2, 3, 16, 16)])


def test_quantize_pt2e_keeps_only_int8_weights(tiny, example):
    q = pt2e.quantize_pt2e(tiny, example, _calib(1))
    weights = {k: v for k, v in q.state_dict().items() if k.startswith("_frozen_param")}
    assert len(weights) == 4 and all(v.dtype == torch.int8 for v in weights.values())
    assert "stem.weight" not in q.state_dict()  # the float weight folded away is gone
    assert "stem.bias" in q.state_dict()  # biases stay float, the graph reads them
    assert serialized_size(q) < serialized_size(tiny)


def test_quantize_pt2e_refuses_bad_options(tiny, example):
    with pytest.raises(TypeError, match="is_per_channel must be True or False"):
        pt2e.quantize_pt2e(tiny, example, _calib(1), is_per_channel="yes")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        pt2e.quantize_pt2e("resnet18", example, _calib(1))


def test_compile_for_cpu_refuses_bad_input(tiny, example):
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        pt2e.compile_for_cpu(lambda x: x, example)
    with pytest.raises(ValueError, match="train mode"):
        pt2e.compile_for_cpu(Tiny().train(), example)
    with pytest.raises(TypeError, match="example must be a float torch.Tensor, got NoneType"):
        pt2e.compile_for_cpu(tiny, None)


@pytest.mark.slow  # torch.compile takes ~30-60 s on 2 cores
def test_compile_for_cpu_runs_int8_graph_and_restores_freezing(tiny, example):
    import torch._inductor.config as inductor_config

    before = inductor_config.freezing
    q = pt2e.quantize_pt2e(tiny, example, _calib())
    compiled = pt2e.compile_for_cpu(q, example)
    assert inductor_config.freezing == before
    with torch.inference_mode():
        ref, out = q(example), compiled(example)
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()
    assert inductor_config.freezing == before  # a call restores it too


@pytest.mark.slow  # two compiles of the int8 graph, ~30-60 s each on 2 cores
def test_compiled_int8_graph_recompiles_after_an_export_drops_it(tiny, example):
    """torch 2.14's strict export calls `torch._dynamo.reset()`, which drops every compiled graph:
    the compiled model compiles again at its next call, frozen like the first time. With
    freezing only a compile option, that recompile failed (onednn.qconv_prepack)."""
    import torch._inductor.config as inductor_config

    before = inductor_config.freezing
    q = pt2e.quantize_pt2e(tiny, example, _calib())
    compiled = pt2e.compile_for_cpu(q, example)
    with torch.inference_mode():
        first = compiled(example)
    pt2e.export_model(tiny, example)  # a strict export: the compiled graph is dropped
    with torch.inference_mode():
        again = compiled(example)
    assert torch.equal(again, first)
    assert inductor_config.freezing == before


def test_quantize_pt2e_dynamic_batch_takes_any_batch_size(tiny, example):
    """With dynamic_batch the graph runs on other batch sizes (calibration and evaluation in
    batches of any size), and gives each image the output it gives it in a batch of 4."""
    calib = [torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(n)) for n in (4, 3)]
    q = pt2e.quantize_pt2e(tiny, example, calib, dynamic_batch=True)
    with torch.no_grad():
        whole, one = q(example), q(example[:1])
        assert q(torch.cat([example, example[:3]])).shape == (7, 4)
    torch.testing.assert_close(one, whole[:1], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"exported for inputs of shape \(batch, 3, 16, 16\)"):
        pt2e.quantize_pt2e(tiny, example, [torch.randn(4, 3, 8, 8)], dynamic_batch=True)
    with pytest.raises(TypeError, match="dynamic_batch must be True or False"):
        pt2e.quantize_pt2e(tiny, example, calib, dynamic_batch=1)
