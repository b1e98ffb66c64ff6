"""Deployable artifacts: saved, loaded, and run in a fresh Python process."""

from __future__ import annotations

import os
import zipfile

import pytest
import torch

from qnb import deploy, models, pt2e, ptq
from qnb.env import hide_deprecation_warnings
from tests.unit.test_pt2e import Tiny

hide_deprecation_warnings()
pytestmark = [
    pytest.mark.usefixtures("torch_state"),
    pytest.mark.filterwarnings("ignore:`torch.jit.:FutureWarning"),
    pytest.mark.filterwarnings("ignore:TypedStorage is deprecated:UserWarning"),
]
CORES = os.cpu_count() or 1
X = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def torchscript_file(tmp_path_factory):
    engine = torch.backends.quantized.engine
    try:
        gen = torch.Generator().manual_seed(0)
        calib = [torch.randn(8, 1, 28, 28, generator=gen) for _ in range(2)]
        int8, _ = ptq.quantize_static(models.build("plain_cnn", seed=0).eval(), calib)
        path = deploy.save_torchscript(int8, tmp_path_factory.mktemp("ts") / "cnn.pt", calib[0])
        return path, int8
    finally:
        torch.backends.quantized.engine = engine


@pytest.fixture(scope="module")
def pt2_file(tmp_path_factory):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(2)
    calib = [torch.randn(4, 3, 16, 16, generator=gen) for _ in range(2)]
    graph = pt2e.quantize_pt2e(Tiny().eval(), X, calib)
    path = deploy.save_pt2e(graph, tmp_path_factory.mktemp("pt2") / "tiny.pt2", X)
    return path, graph


def test_torchscript_runs_bit_for_bit_in_a_fresh_process(torchscript_file):
    path, int8 = torchscript_file
    x = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        here = int8(x)
    assert torch.equal(deploy.run_fresh(path, x, threads=1), here)


def test_pt2e_graph_runs_bit_for_bit_in_a_fresh_process(pt2_file):
    path, graph = pt2_file
    with torch.inference_mode():
        here = graph(X)
    assert torch.equal(deploy.run_fresh(path, X), here)
    with torch.inference_mode():
        assert torch.equal(deploy.load(path)(X), here)


def test_saved_pt2e_file_holds_no_example_batch(pt2_file):
    with zipfile.ZipFile(pt2_file[0]) as archive:
        samples = [i for i in archive.infolist() if "sample_inputs" in i.filename]
    assert samples and all(i.file_size == 0 for i in samples)


@pytest.mark.slow  # torch.compile takes ~30-60 s on 2 cores
def test_compiled_pt2e_graph_matches_in_a_fresh_process(pt2_file):
    path, graph = pt2_file
    compiled = pt2e.compile_for_cpu(graph, X)
    with torch.inference_mode():
        here = compiled(X)
    assert torch.equal(deploy.run_fresh(path, X, threads=1, compile=True), here)


@pytest.mark.parametrize(
    ("path", "kwargs", "error", "match"),
    [
        ("m.onnx", {}, ValueError, r"path must end in \.pt \(TorchScript.*\.pt2.*got 'm\.onnx'"),
        (3, {}, TypeError, "path must be a str or os.PathLike, got int"),
        ("missing.pt", {}, FileNotFoundError, "path='missing.pt' is not a file"),
    ],
)
def test_bad_paths_are_named(path, kwargs, error, match):
    with pytest.raises(error, match=match):
        deploy.run_fresh(path, X, **kwargs)
    with pytest.raises(error, match=match):
        deploy.load(path)


@pytest.mark.parametrize(
    ("inputs", "kwargs", "error", "match"),
    [
        ([1.0], {}, TypeError, "inputs must be an input tensor, got list"),
        (torch.full((1, 3), float("nan")), {}, ValueError, "inputs holds NaN or inf"),
        (X, {"threads": 0}, ValueError, "threads must be an int in 1"),
        (X, {"threads": CORES + 1}, ValueError, "threads must be an int in 1"),
        (X, {"compile": "yes"}, TypeError, "compile must be True or False, got 'yes'"),
        (X, {"compile": True}, ValueError, "compile=True needs a .pt2 graph"),
    ],
)
def test_bad_arguments_are_refused_before_starting_a_process(
    torchscript_file, inputs, kwargs, error, match
):
    with pytest.raises(error, match=match):
        deploy.run_fresh(torchscript_file[0], inputs, **kwargs)


def test_a_failure_in_the_fresh_process_comes_back_with_its_reason(tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not an archive")
    with pytest.raises(RuntimeError, match=r"(?s)fresh process failed.*not a TorchScript archive"):
        deploy.run_fresh(broken, X)


def test_save_pt2e_refuses_bad_arguments(pt2_file, tmp_path):
    _, graph = pt2_file
    with pytest.raises(ValueError, match=r"path must end in \.pt2 for an ExportedProgram"):
        deploy.save_pt2e(graph, tmp_path / "g.pt", X)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        deploy.save_pt2e("graph", tmp_path / "g.pt2", X)
    with pytest.raises(TypeError, match="example must be an input tensor, got NoneType"):
        deploy.save_pt2e(graph, tmp_path / "g.pt2", None)
