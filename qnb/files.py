"""Files (the base layer): the checkout's root, and the one atomic writer every module uses."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the checkout: notebooks/, data/, .cache/


def write_atomic(path: str | os.PathLike, content: str | bytes) -> Path:
    """Write `content` to `path` via a temporary file in the same folder, fsync and a rename,
    so a reader (or a crash) never sees half a file. Text is written as UTF-8, newlines as given.
    The file is readable by others (0o644), like one written with `open`."""
    path = Path(path)
    data = content.encode() if isinstance(content, str) else bytes(content)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
