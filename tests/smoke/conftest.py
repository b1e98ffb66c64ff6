"""A real JupyterLab server for the smoke tests, isolated and always cleaned up.

The server runs from this environment on 127.0.0.1 with a random free port and token, in
its own process group, serving a *copy* of `notebooks/` (what the browser runs never
touches the committed files). Its Jupyter config, data, runtime, settings and workspace
folders are fresh temporary ones, so nothing from the user's home leaks in, and the kernel
is this environment's `python3` (JUPYTER_PATH, as the Makefile sets it). Every process the
tests start (server, kernels, browser) carries a marker in its environment; at the end of
the session any that is still alive is killed and the session fails naming it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
OUTPUT = REPO / "tests" / "output"
MARKER_VAR = "QNB_SMOKE_SESSION"
STARTUP_TIMEOUT = 90.0

# JupyterLab user settings for an unattended run: no autosave, every cell attached to the page
# (so the browser test sees all outputs). News and update checks are deliberately not set here:
# the environment's own override (written by `make setup`, ENV_OVERRIDES) must turn them off, as
# it does for `make lab`, and the browser test checks that it does.
ENV_OVERRIDES = Path(sys.prefix) / "share/jupyter/lab/settings/overrides.d/qnb.json"
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}


@dataclass
class LabServer:
    """A running JupyterLab server: where it listens and how to talk to it."""

    process: subprocess.Popen
    port: int
    token: str
    root: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def lab_url(self, path: str = "") -> str:
        return f"{self.url}lab/tree/{path}?token={self.token}"

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}/{path.lstrip('/')}?token={self.token}"

    def api(self, method: str, path: str, body: dict | None = None, timeout: float = 30):
        """Call the REST API; returns the decoded JSON (None for an empty reply)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path.lstrip("/"),
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            payload = reply.read()
        return json.loads(payload) if payload else None

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def marked_processes(marker: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process whose environment carries `marker`."""
    needle = f"{MARKER_VAR}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if cmdline:  # zombies have an empty command line and are not running
            found.append((int(entry.name), cmdline.strip()))
    return found


def _kill_marked(marker: str, timeout: float = 10.0) -> list[tuple[int, str]]:
    """Kill every process carrying `marker`; return those that were still alive."""
    leftovers = marked_processes(marker)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, _ in marked_processes(marker):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout / 2
        while marked_processes(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
    return leftovers


@pytest.fixture(scope="session")
def smoke_marker():
    """A marker for this session's processes; at the end, none of them may still run."""
    marker = uuid.uuid4().hex
    yield marker
    deadline = time.monotonic() + 5  # a moment for helpers (e.g. crash handlers) to exit
    while marked_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    leftovers = _kill_marked(marker)
    still = marked_processes(marker)
    assert not still, f"processes survived SIGKILL: {still}"
    assert not leftovers, f"processes were left behind (now killed): {leftovers}"


def _copy_notebooks(dest: Path) -> Path:
    """Copy the notebooks (and point at the shipped data) so a run cannot change them."""
    root = dest / "notebooks"
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
    if NOTEBOOKS.is_dir():
        shutil.copytree(NOTEBOOKS, root, ignore=ignore)
    else:
        root.mkdir()
    if (REPO / "data").is_dir():
        (dest / "data").symlink_to(REPO / "data", target_is_directory=True)
    return root


def _write_lab_settings(settings_dir: Path) -> None:
    for plugin, values in LAB_SETTINGS.items():
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _server_env(base: Path, marker: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        # QNB_PROGRESS: the lab gets the interactive default (widget bars), as under `make lab`;
        # MPLBACKEND: plots must render inline, not go to a file backend.
        if not k.startswith(("JUPYTER_", "JPY_")) and k not in ("QNB_PROGRESS", "MPLBACKEND")
    }
    env.update(
        JUPYTER_PATH=str(Path(sys.prefix) / "share" / "jupyter"),
        JUPYTER_CONFIG_DIR=str(base / "config"),
        JUPYTER_DATA_DIR=str(base / "data"),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        IPYTHONDIR=str(base / "ipython"),
        PYTHONUNBUFFERED="1",
        **{MARKER_VAR: marker},
    )
    return env


def _wait_for_server(process: subprocess.Popen, runtime: Path, token: str, log: Path) -> int:
    """Wait until the server wrote its info file and answers /api/status; return its port."""
    info = runtime / f"jpserver-{process.pid}.json"
    deadline = time.monotonic() + STARTUP_TIMEOUT
    port = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {process.returncode}:\n{log.read_text()}")
        if port is None and info.exists():
            try:
                port = json.loads(info.read_text())["port"]
            except (ValueError, KeyError):
                pass  # half written; read again
        if port is not None:
            status = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/status", headers={"Authorization": f"token {token}"}
            )
            try:
                with urllib.request.urlopen(status, timeout=5) as reply:
                    if reply.status == 200:
                        return port
            except OSError:  # not listening yet (HTTPError is an OSError too)
                pass
        time.sleep(0.2)
    raise RuntimeError(f"jupyter lab did not start in {STARTUP_TIMEOUT:.0f} s:\n{log.read_text()}")


def _stop_server(server: LabServer) -> None:
    """Shut down politely (kernels included), then make sure the process group is gone."""
    if server.process.poll() is None:
        try:
            server.api("POST", "api/shutdown", timeout=10)
        except OSError:
            pass
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(server.process.pid, sig)
        except ProcessLookupError:
            break
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue
    server.process.wait(timeout=10)


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory, smoke_marker):
    """A JupyterLab server on a temporary copy of notebooks/, stopped after the session."""
    tmp = tmp_path_factory.mktemp("lab")
    root = _copy_notebooks(tmp / "project")
    base = tmp / "jupyter"  # the server's own config, data, runtime, settings, workspaces
    for sub in ("config", "data", "runtime", "ipython", "workspaces"):
        (base / sub).mkdir(parents=True)
    _write_lab_settings(base / "settings")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    log = OUTPUT / "smoke" / "jupyter-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.port=0",  # a free port picked by the server; read back from its info file
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.terminals_enabled=False",
        f"--LabApp.user_settings_dir={base / 'settings'}",
        f"--LabApp.workspaces_dir={base / 'workspaces'}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        "--LabApp.expose_app_in_browser=True",
    ]
    with log.open("w") as log_file:
        process = subprocess.Popen(
            command,
            cwd=root,
            env=_server_env(base, smoke_marker),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = LabServer(process=process, port=0, token=token, root=root, log=log)
    try:
        server.port = _wait_for_server(process, base / "runtime", token, log)
        yield server
    finally:
        _stop_server(server)
