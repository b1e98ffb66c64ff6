"""Progress bars for long cells: a live bar in JupyterLab, a few plain lines in batch runs.

`progress(iterable)` wraps tqdm. Which bar it draws is chosen by the environment variable
`QNB_PROGRESS`, which the kernel inherits from whatever started it:

- `auto` (the default, e.g. under `make lab`): tqdm's notebook widget bar inside a Jupyter
  kernel, a terminal bar elsewhere.
- `text` (exported by `make run` / `make test` for papermill and nbval): a plain text bar of
  fixed width that redraws at most every `TEXT_MININTERVAL` seconds, so an executed notebook
  keeps a couple of lines per loop instead of a flood of updates or a widget it cannot show.
- `off`: no bar at all.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from tqdm import std as _std

ENV_VAR = "QNB_PROGRESS"
MODES = ("auto", "text", "off")
TEXT_MININTERVAL = 60.0  # seconds between redraws of a text bar
TEXT_NCOLS = 80
SHOW_AFTER = 2.0  # seconds a loop must run before its bar appears


def mode() -> str:
    """The progress mode in effect: the value of `QNB_PROGRESS`, `auto` when unset."""
    value = os.environ.get(ENV_VAR, "").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(
            f"environment variable {ENV_VAR}={os.environ[ENV_VAR]!r} is not a progress mode; "
            f"use one of {', '.join(MODES)}"
        )
    return value


def progress(iterable: Iterable | None = None, *, mode: str | None = None, **kwargs):
    """Wrap `iterable` in a tqdm progress bar suited to where the code runs.

    `mode` overrides `QNB_PROGRESS` (`auto`, `text` or `off`); every other keyword goes to
    tqdm (`desc`, `total`, `unit`, `leave`, `disable`, ...). Without an iterable it returns
    a bar to drive by hand: `with progress(total=n) as bar: ... bar.update()`.
    """
    chosen = _resolve(mode)
    kwargs.setdefault("delay", SHOW_AFTER)  # loops that finish sooner leave no bar behind
    if chosen == "off":
        kwargs["disable"] = True
        return _std.tqdm(iterable, **kwargs)
    if chosen == "text":
        kwargs.setdefault("mininterval", TEXT_MININTERVAL)
        kwargs.setdefault("ncols", TEXT_NCOLS)
        kwargs.setdefault("ascii", True)
        kwargs["dynamic_ncols"] = False
        return _std.tqdm(iterable, **kwargs)
    from tqdm.auto import tqdm as auto_tqdm  # the notebook bar inside a Jupyter kernel

    return auto_tqdm(iterable, **kwargs)


def check_enabled(enabled: object) -> bool | None:
    """`enabled` itself if it is None (auto), True or False; a TypeError otherwise."""
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"progress must be None (auto), True or False, got {enabled!r}")
    return enabled


def bar_as_asked(iterable: Iterable, enabled: bool | None, **kwargs):
    """`progress(iterable)` as a function's `progress=` argument asks: None follows
    `QNB_PROGRESS`, False hides the bar, True shows one even when `QNB_PROGRESS` is off."""
    chosen = "off" if enabled is False else None
    if enabled and mode() == "off":
        chosen = "text"
    return progress(iterable, mode=chosen, **kwargs)


def _resolve(override: str | None) -> str:
    if override is None:
        return mode()
    if override not in MODES:
        raise ValueError(f"mode={override!r} is not a progress mode; use one of {', '.join(MODES)}")
    return override
