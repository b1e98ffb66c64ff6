"""End to end in a real browser: JupyterLab opens a notebook, runs all cells, shows results.

Headless Chromium from the system (Debian's `chromium`; `.ci/run` installs it) is driven by
Playwright's Python package; no browser is downloaded. The server serves a temporary copy of
`notebooks/`, and autosave is off, so "run all" never touches the committed files.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.smoke.conftest import ENV_OVERRIDES, MARKER_VAR, NOTEBOOKS, OUTPUT, REPO

SCREENSHOTS = OUTPUT / "browser"
RUN_ALL_TIMEOUT_S = 600  # generous: the whole notebook, kernel start included
CHROMIUM_ARGS = [
    "--no-sandbox",  # needed as root; the page is our own local JupyterLab
    "--disable-background-networking",
    "--disable-sync",
    "--disable-component-update",
    "--disable-default-apps",
    "--no-first-run",
    "--disable-dev-shm-usage",
]

# JupyterLab 4's question when fetchNews is unset ("Ask"); `make lab` must never show it.
NEWS_PROMPT = re.compile(r"notified about official Jupyter news", re.I)
NEWS_PLUGIN = "@jupyterlab/apputils-extension:notification"
QUIET_WAIT_MS = 5_000  # the prompt comes right after the app is restored; give it time to show

# (notebook, a regex one of its outputs must match once it ran): the worked example's integer.
CASES = [(NOTEBOOKS / "01_affine_quantization.ipynb", r"q = 40\b")]

# JupyterLab's current notebook and kernel, through the app the server exposes to the page.
JS_KERNEL_IDLE = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = panel && panel.sessionContext && panel.sessionContext.session
    && panel.sessionContext.session.kernel;
  return !!(kernel && kernel.status === 'idle' && panel.context.isReady);
}"""
JS_PROMPTS = """() => Array.from(
  document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt'),
  p => p.textContent.trim())"""


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "the browser test needs Debian's `chromium` on PATH: "
            "apt-get install -y --no-install-recommends chromium (.ci/run does this)"
        )
    return path


@pytest.fixture
def page(tmp_path, smoke_marker):
    """A page in a fresh headless Chromium profile; the browser is closed afterwards."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path / "chromium-profile",  # a fresh user-data folder
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            env={**os.environ, MARKER_VAR: smoke_marker},
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.errors = []
            page.on("pageerror", lambda error: page.errors.append(str(error)))
            yield page
        finally:
            context.close()


def run_all_cells(page, server, notebook: str) -> list[str]:
    """Open `notebook` in JupyterLab, Run > Run All Cells, wait; return the cell prompts."""
    page.goto(server.lab_url(notebook))
    page.locator(".jp-NotebookPanel .jp-CodeCell").first.wait_for(timeout=60_000)
    page.wait_for_function(JS_KERNEL_IDLE, timeout=120_000)

    # Start from no outputs (a committed notebook has some), so all we check comes from this run.
    menu(page, "Edit", "Clear Outputs of All Cells")
    page.wait_for_function(
        f"() => ({JS_PROMPTS})().every(p => p === '[ ]:')"
        " && !document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output')"
    )
    menu(page, "Run", "Run All Cells")

    # All cells are queued ([*]) at once and numbered as they finish; done when none is pending,
    # the first has run and the kernel is idle (after an error the rest stay unnumbered, [ ]).
    page.wait_for_function(
        f"() => {{ const p = ({JS_PROMPTS})(); return p.length && /\\d/.test(p[0])"
        f" && p.every(x => x !== '[*]:') && ({JS_KERNEL_IDLE})(); }}",
        timeout=RUN_ALL_TIMEOUT_S * 1000,
        polling=500,
    )
    return page.evaluate(JS_PROMPTS)


def menu(page, top: str, item: str) -> None:
    """Click a menu bar entry, then one of its items, as a user would."""
    page.locator(".lm-MenuBar-item", has_text=re.compile(f"^{top}$")).click()
    page.get_by_role("menuitem", name=item, exact=True).click()


def error_outputs(page) -> list[str]:
    errors = page.locator(
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]',
        has_text=re.compile(r"Traceback|Error"),
    )
    return [text.strip()[-1500:] for text in errors.all_inner_texts()]


def news_prompts(page) -> list[str]:
    """The text of every news prompt (toast or notification) on the page."""
    return [text.strip() for text in page.get_by_text(NEWS_PROMPT).all_inner_texts()]


def test_lab_is_quiet_offline(lab_server, page):
    """No news prompt and no news or update fetching, from the environment's settings override."""
    assert ENV_OVERRIDES.is_file(), f"{ENV_OVERRIDES} is missing: `make setup` writes it"
    schema = lab_server.api("GET", f"lab/api/settings/{NEWS_PLUGIN}")["schema"]
    defaults = {name: prop.get("default") for name, prop in schema["properties"].items()}
    assert defaults["fetchNews"] == "false" and defaults["checkForUpdates"] is False, defaults
    page.goto(lab_server.lab_url())
    page.wait_for_function("() => !!window.jupyterapp", timeout=60_000)
    page.evaluate("async () => { await window.jupyterapp.restored; }")
    page.wait_for_timeout(QUIET_WAIT_MS)
    shot = SCREENSHOTS / "lab-start.png"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=shot)
    assert not news_prompts(page), f"JupyterLab asks about news (see {shot}): {news_prompts(page)}"


@pytest.mark.parametrize(("source", "expected"), CASES, ids=[c[0].name for c in CASES])
def test_run_all_in_jupyterlab(lab_server, page, source: Path, expected: str):
    assert source.is_file(), f"{source.relative_to(REPO)} is missing"
    if not (lab_server.root / source.name).is_file():  # a notebook from elsewhere: serve a copy
        shutil.copy(source, lab_server.root / source.name)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / f"{source.stem}.png"
    try:
        prompts = run_all_cells(page, lab_server, source.name)
    finally:
        page.screenshot(path=shot)
    assert not news_prompts(page), f"JupyterLab asked about news (see {shot})"
    problems = error_outputs(page) + [f"page error: {e}" for e in page.errors]
    if problems:
        pytest.fail(f"{source.name} raised in JupyterLab (see {shot}):\n\n" + "\n\n".join(problems))
    unrun = [p for p in prompts if not re.fullmatch(r"\[\d+\]:", p)]
    assert prompts and not unrun, f"cells left unexecuted: {prompts}"

    outputs = page.locator(".jp-OutputArea-output")
    known = outputs.filter(has_text=re.compile(expected))
    assert known.count() >= 1, f"no output matches {expected!r}"
    known.first.scroll_into_view_if_needed()
    assert known.first.is_visible()
    page.screenshot(path=SCREENSHOTS / f"{source.stem}-expected-output.png")

    plots = page.locator(".jp-OutputArea-output img")
    assert plots.count() >= 1, "no rendered plot (<img>) in the outputs"
    plot = plots.first
    plot.scroll_into_view_if_needed()
    assert plot.is_visible()
    assert plot.evaluate("img => img.complete && img.naturalWidth > 100"), "plot did not decode"
    page.screenshot(path=shot)  # the first plot in view, the notebook's outputs around it
