"""The Jupyter server `make lab` starts: lists the notebooks, runs this environment's kernel."""

from __future__ import annotations

import json
import sys
import time
import uuid

import pytest
import websocket

from tests.smoke.conftest import NOTEBOOKS

EXPECTED = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


def execute(server, kernel_id: str, code: str, timeout: float = 120) -> tuple[str, list[dict]]:
    """Run `code` in the kernel over the server's websocket; return (stdout, error contents)."""
    ws = websocket.create_connection(
        server.ws_url(f"api/kernels/{kernel_id}/channels"), timeout=timeout
    )
    try:
        session, msg_id = uuid.uuid4().hex, uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "session": session,
            "username": "smoke",
            "version": "5.3",
            "date": "",
        }
        content = {"code": code, "silent": False, "store_history": False, "allow_stdin": False}
        ws.send(
            json.dumps(
                {
                    "header": header,
                    "parent_header": {},
                    "metadata": {},
                    "content": content,
                    "channel": "shell",
                    "buffers": [],
                }
            )
        )
        stdout, errors, replied, idle = [], [], False, False
        deadline = time.monotonic() + timeout
        while not (replied and idle):
            assert time.monotonic() < deadline, f"no reply in {timeout} s; got {stdout}"
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, body = msg["msg_type"], msg["content"]
            if kind == "stream" and body["name"] == "stdout":
                stdout.append(body["text"])
            elif kind == "error":
                errors.append(body)
            elif kind == "execute_reply":
                replied = True
                if body["status"] != "ok":
                    errors.append(body)
            elif kind == "status" and body["execution_state"] == "idle":
                idle = True
        return "".join(stdout), errors
    finally:
        ws.close()


@pytest.fixture
def kernel(lab_server):
    """A python3 kernel started through the REST API, deleted afterwards."""
    started = lab_server.api("POST", "api/kernels", {"name": "python3"})
    yield started
    try:
        lab_server.api("DELETE", f"api/kernels/{started['id']}")
    except OSError:
        pass  # the server fixture's shutdown stops it anyway


def test_server_lists_the_notebooks(lab_server):
    listing = lab_server.api("GET", "api/contents")
    assert listing["type"] == "directory"
    names = sorted(e["name"] for e in listing["content"] if e["type"] == "notebook")
    assert names == EXPECTED, lab_server.log_tail()
    if "01_affine_quantization.ipynb" in EXPECTED:
        nb = lab_server.api("GET", "api/contents/01_affine_quantization.ipynb?content=0")
        assert nb["type"] == "notebook" and nb["writable"]


def test_kernel_is_this_environment_and_reports_it(lab_server, kernel):
    assert kernel["name"] == "python3"
    specs = lab_server.api("GET", "api/kernelspecs")
    assert specs["default"] == "python3"
    code = "\n".join(
        [
            "import sys, qnb, qnb.env, qnb.progress",
            "print('executable', sys.executable)",
            "from tqdm.notebook import tqdm_notebook",
            "print('notebook_bar', isinstance(qnb.progress.progress(range(1)), tqdm_notebook))",
            "qnb.env.show()",
        ]
    )
    out, errors = execute(lab_server, kernel["id"], code)
    assert not errors, errors
    lines = dict(line.split(None, 1) for line in out.splitlines() if " " in line.strip())
    assert lines["executable"] == sys.executable, "the kernel is not this environment's Python"
    assert "quantized_engines" in lines and "x86" in lines["quantized_engines"], out
    assert lines["notebook_bar"] == "True", "progress bars in the lab should be notebook widgets"
    # the server hears "idle" from the kernel a moment after our websocket does
    deadline = time.monotonic() + 20
    while (state := lab_server.api("GET", f"api/kernels/{kernel['id']}")["execution_state"]) != (
        "idle"
    ) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert state == "idle"
