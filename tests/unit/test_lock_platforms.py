"""requirements.lock resolves on every platform the workbook supports, with pip's own resolver.

For each platform pip resolves the lock against the registry as a fresh install there would:
`pip install --dry-run --ignore-installed --only-binary=:all: --platform <every tag the platform
accepts> --python-version <the oldest Python we support> --implementation cp --abi cp311
--target <tmp> --report <json> -r requirements.lock`. A package without a wheel there fails the
test by name; so does a package pip would add that the lock does not pin (its version would
float), and a yanked pin. pip evaluates environment markers against the interpreter running it,
even with --platform, so the subprocess first gives pip the target's marker environment
(`sys_platform`, `platform_system`, ...). A pin published only as an sdist (`SDIST_ONLY`, pure
Python) is first built into a wheel here and offered with --find-links; the test fails if that
wheel is not `py3-none-any`. The four resolutions run in parallel (about 100 s of
CPU in all, 2.5 minutes on a busy 2-core machine; marked slow, so `make test-slow` and `make test`
run them); they are skipped, saying why, only when the registry cannot be reached.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

LOCK = REPO / "requirements.lock"
TIMEOUT_S = 600
GLIBC_MINOR = 35  # Linux wheels must install on glibc 2.35 (Ubuntu 22.04; Debian 12 has 2.36)
MACOS_MAJOR = 14  # torch 2.14's macOS arm64 wheel needs macOS 14; older Macs cannot run it

# pip with the target's marker environment, then pip's own command line.
PIP_FOR_TARGET = """
import json, sys
from pip._vendor.packaging import markers
target = {**markers.default_environment(), **json.loads(sys.argv[1])}
markers.default_environment = lambda: dict(target)
from pip._internal.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def manylinux_tags(arch: str, glibc_minor: int = GLIBC_MINOR) -> list[str]:
    """Every manylinux tag a glibc 2.<glibc_minor> Linux on `arch` accepts, newest first."""
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags = []
    for minor in range(glibc_minor, 4 if arch == "x86_64" else 16, -1):
        tags.append(f"manylinux_2_{minor}_{arch}")
        if minor in legacy and (minor == 17 or arch == "x86_64"):
            tags.append(f"{legacy[minor]}_{arch}")
    return [*tags, f"linux_{arch}"]


def macos_arm64_tags(major: int = MACOS_MAJOR) -> list[str]:
    """Every tag macOS <major> on Apple Silicon accepts: arm64 and universal2, 10.4 upwards."""
    tags = [
        f"macosx_{v}_0_{arch}" for v in range(major, 10, -1) for arch in ("arm64", "universal2")
    ]
    return tags + [f"macosx_10_{minor}_universal2" for minor in range(16, 3, -1)]


@dataclass(frozen=True)
class Platform:
    name: str
    tags: list[str]
    markers: dict[str, str]
    own: frozenset[str]  # platform-specific pins this platform must get
    absent: frozenset[str]  # other platforms' pins it must not get

    def marker_environment(self, python: str) -> dict[str, str]:
        return {**self.markers, "python_full_version": python, "implementation_version": python}


# Pure-Python pins published only as an sdist: antlr4-python3-runtime 4.9.x, which hydra-core
# (an executorch dependency) requires.
SDIST_ONLY = frozenset({"antlr4-python3-runtime"})
CUDA = frozenset({"cuda-bindings", "cuda-toolkit", "nvidia-cudnn-cu13", "triton"})
WINDOWS = frozenset({"colorama", "pywinpty"})
POSIX = frozenset({"pexpect", "ptyprocess"})
LINUX = {"os_name": "posix", "sys_platform": "linux", "platform_system": "Linux"}
PLATFORMS = [
    Platform(
        "linux-x86_64",
        manylinux_tags("x86_64"),
        {**LINUX, "platform_machine": "x86_64"},
        CUDA | POSIX,
        WINDOWS | {"appnope"},
    ),
    Platform(
        "linux-aarch64",
        manylinux_tags("aarch64"),
        {**LINUX, "platform_machine": "aarch64"},
        CUDA | POSIX,
        WINDOWS | {"appnope"},
    ),
    Platform(
        "macos-arm64",
        macos_arm64_tags(),
        {
            "os_name": "posix",
            "sys_platform": "darwin",
            "platform_system": "Darwin",
            "platform_machine": "arm64",
        },
        POSIX | {"appnope"},
        CUDA | WINDOWS,
    ),
    Platform(
        "windows-x86_64",
        ["win_amd64"],
        {
            "os_name": "nt",
            "sys_platform": "win32",
            "platform_system": "Windows",
            "platform_machine": "AMD64",
        },
        WINDOWS,
        CUDA | POSIX | {"appnope"},
    ),
]


def minimum_python() -> str:
    """The oldest Python pyproject.toml allows, as a full version (">=3.11" -> "3.11.0")."""
    spec = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    match = re.search(r">=\s*(3\.\d+(?:\.\d+)?)", spec)
    assert match, f"requires-python has no lower bound: {spec!r}"
    version = match.group(1)
    return version if version.count(".") == 2 else f"{version}.0"


def locked() -> dict[str, Requirement]:
    """The lock's requirements by canonical name."""
    lines = [line.split("#")[0].strip() for line in LOCK.read_text().splitlines()]
    reqs = [Requirement(line) for line in lines if line]
    return {canonicalize_name(r.name): r for r in reqs}


def index_url() -> str:
    """The index pip uses first (PIP_INDEX_URL, pip's configuration, or PyPI)."""
    config = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    ).stdout
    match = re.search(r"^[^.\s]*\.index-url='([^']+)'", config, re.M)
    return os.environ.get("PIP_INDEX_URL") or (
        match.group(1) if match else "https://pypi.org/simple"
    )


def registry_problem(url: str) -> str | None:
    """None when the index answers for torch, else why not."""
    cafile = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    cafile = cafile if cafile and Path(cafile).is_file() else None
    context = ssl.create_default_context(cafile=cafile)
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/torch/", timeout=20, context=context):
            return None
    except (urllib.error.URLError, OSError) as error:
        return f"{type(error).__name__}: {error}"


def build_sdist_only(tmp: Path) -> Path:
    """The pinned `SDIST_ONLY` packages built into wheels in one folder (to --find-links)."""
    folder = tmp / "sdist-wheels"
    pins = [str(r).split(";")[0].strip() for n, r in locked().items() if n in SDIST_ONLY]
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(folder)]
    done = subprocess.run([*command, *pins], capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, f"building {pins} failed:\n{done.stderr[-2000:]}"
    built = sorted(p.name for p in folder.glob("*.whl"))
    assert len(built) == len(pins) and all(b.endswith("-py3-none-any.whl") for b in built), (
        f"{pins} must build into pure-Python wheels, got {built}"
    )
    return folder


def resolve(
    platform: Platform, python: str, tmp: Path, wheels: Path | None = None
) -> tuple[int, str, dict]:
    """pip's dry-run resolution of the lock for `platform`: (exit status, stderr, report)."""
    report = tmp / f"{platform.name}.json"
    command = [
        sys.executable, "-c", PIP_FOR_TARGET, json.dumps(platform.marker_environment(python)),
        "install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
        *(arg for tag in platform.tags for arg in ("--platform", tag)),
        "--python-version", python, "--implementation", "cp", "--abi", "cp311",
        "--target", str(tmp / platform.name), "--report", str(report),
        "--quiet", "--progress-bar", "off", "--disable-pip-version-check",
        *(["--find-links", str(wheels)] if wheels else []),
        "-r", str(LOCK),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    noise = "is ignored: it is neither a file nor a directory"  # this machine's local indexes
    stderr = "\n".join(line for line in done.stderr.splitlines() if noise not in line)
    return done.returncode, stderr, json.loads(report.read_text()) if report.exists() else {}


@pytest.fixture(scope="module")
def resolutions(tmp_path_factory):
    """Every platform's resolution at the oldest supported Python, run in parallel."""
    url = index_url()
    problem = registry_problem(url)
    if problem:
        pytest.skip(f"the package registry {url} cannot be reached ({problem}); "
                    "resolving the lock for other platforms needs it")  # fmt: skip
    tmp = tmp_path_factory.mktemp("lock-platforms")
    python = minimum_python()
    wheels = build_sdist_only(tmp)
    with ThreadPoolExecutor(len(PLATFORMS)) as pool:
        futures = {p.name: pool.submit(resolve, p, python, tmp, wheels) for p in PLATFORMS}
        return {name: future.result() for name, future in futures.items()}


def unresolved(stderr: str) -> list[str]:
    """The requirements pip named as having no matching distribution."""
    return re.findall(r"No matching distribution found for (\S+)", stderr)


@pytest.mark.slow  # the registry and pip's resolver, four times: minutes on 2 cores
@pytest.mark.network
@pytest.mark.parametrize("platform", PLATFORMS, ids=lambda p: p.name)
def test_lock_resolves_with_pinned_versions_only(resolutions, platform: Platform):
    status, stderr, report = resolutions[platform.name]
    missing = unresolved(stderr)
    assert status == 0, (
        f"requirements.lock does not resolve on {platform.name} (Python {minimum_python()}): "
        f"no wheel for {', '.join(missing) or 'see below'}\n{stderr[-3000:]}"
    )
    pins = locked()
    chosen = {canonicalize_name(i["metadata"]["name"]): i for i in report["install"]}
    floating = {n: i["metadata"]["version"] for n, i in chosen.items() if n not in pins}
    assert not floating, f"{platform.name} installs packages the lock does not pin: {floating}"
    differ = {
        n: (i["metadata"]["version"], str(pins[n].specifier))
        for n, i in chosen.items()
        if f"=={i['metadata']['version']}" != str(pins[n].specifier)
    }
    assert not differ, f"{platform.name} resolves other versions than the pins: {differ}"
    yanked = re.findall(r"is a yanked version: '([^']+)'", stderr)
    yanked += [n for n, i in chosen.items() if i.get("is_yanked")]
    assert not yanked, f"{platform.name} installs yanked pins: {yanked}"


@pytest.mark.slow  # the registry and pip's resolver, four times: minutes on 2 cores
@pytest.mark.network
@pytest.mark.parametrize("platform", PLATFORMS, ids=lambda p: p.name)
def test_platform_packages_follow_their_markers(resolutions, platform: Platform):
    """The target's markers really applied: its own packages in, other platforms' out."""
    status, _, report = resolutions[platform.name]
    assert status == 0, f"{platform.name} did not resolve (see the test above)"
    chosen = {canonicalize_name(i["metadata"]["name"]) for i in report["install"]}
    assert platform.own <= chosen, f"missing on {platform.name}: {platform.own - chosen}"
    foreign = platform.absent & chosen
    assert not foreign, f"{platform.name} installs other platforms' packages: {foreign}"
    assert {"torch", "torchvision", "torchao", "scipy"} <= chosen


def test_lock_is_exact_pins_with_platform_markers_only():
    """Offline: every line is name==version, and only platform-specific pins carry a marker."""
    for req in locked().values():
        assert re.fullmatch(r"==[\w.+!-]+", str(req.specifier)), f"not an exact pin: {req}"
        assert not req.extras and not req.url, f"extras or URL in the lock: {req}"
        if req.marker is not None:
            assert re.search(r"platform_system|sys_platform|os_name", str(req.marker)), req
    pins = locked()
    for name in set().union(*(p.absent for p in PLATFORMS)):
        assert pins[name].marker is not None, f"{name} is platform-specific but has no marker"
    for name in ("torch", "torchvision", "torchao", "numpy", "scipy", "jupyterlab"):
        assert pins[name].marker is None, f"{name} must be installed everywhere"


def test_platform_tags_are_complete():
    linux = manylinux_tags("x86_64")
    assert linux[0] == "manylinux_2_35_x86_64" and linux[-1] == "linux_x86_64"
    assert {"manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux1_x86_64"} <= set(linux)
    arm = manylinux_tags("aarch64")
    assert {"manylinux_2_28_aarch64", "manylinux2014_aarch64", "manylinux_2_17_aarch64"} <= set(arm)
    assert not {t for t in arm if "manylinux1" in t or "2010" in t or "_2_16_" in t}
    mac = macos_arm64_tags()
    assert mac[0] == "macosx_14_0_arm64" and "macosx_11_0_arm64" in mac
    assert "macosx_10_9_universal2" in mac and not any(t.endswith("x86_64") for t in mac)


def test_minimum_python_is_declared_everywhere():
    """pyproject, README and the resolution above agree on the oldest Python (3.11.0)."""
    assert minimum_python() == "3.11.0"
    readme = (REPO / "README.md").read_text()
    assert "Python 3.11" in readme and "3.11.0" in readme
