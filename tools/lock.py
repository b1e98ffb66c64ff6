"""Merge `pip freeze` into requirements.lock and environment.yml (what `make lock` runs).

    pip freeze --all --exclude pip --exclude-editable | python tools/lock.py LOCK ENVIRONMENT_YML

The new lock is the frozen pins, each with the environment marker its package carries in the
current lock (`name==1.0 ; platform_system == "Linux"`), plus the current lock's marked pins of
packages this machine does not install (another platform's), sorted by canonical name (PEP 503:
lower case, runs of `-_.` as one `-`). The lock's `#` comment lines stay on top. environment.yml
keeps everything up to its `  - pip:` line, which is then followed by the same pins. Nothing is
written unless the whole input was read and holds at least one pin. Standard library only.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PIP_SECTION = "  - pip:"
PIP_INDENT = "      - "


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.lower())


def key(line: str) -> str:
    """The canonical name of a pin: the text before `==` (the whole line if there is none)."""
    return canonical(line.split("==", 1)[0])


def merge(lock_lines: list[str], frozen: list[str]) -> list[str]:
    """The new pins, sorted as `LC_ALL=C sort` sorts "name<TAB>line"."""
    kept: dict[str, str] = {}  # marked pins of the current lock, by name
    marker: dict[str, str] = {}  # "; <marker>" by name
    for line in lock_lines:
        if re.match(r"[A-Za-z0-9].*;", line):
            kept[key(line)] = line
            marker[key(line)] = line[line.index(";") :]
    entries = []
    for line in frozen:
        name = key(line)
        entries.append(f"{name}\t{line} {marker[name]}" if name in marker else f"{name}\t{line}")
        kept.pop(name, None)
    entries += [f"{name}\t{line}" for name, line in kept.items()]
    return [entry.split("\t", 1)[1] for entry in sorted(entries)]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    lock, environment = Path(argv[0]), Path(argv[1])
    frozen = [line for line in sys.stdin.read().splitlines() if line.strip()]
    if not frozen:
        print("tools/lock.py: no pins on standard input (did pip freeze fail?)", file=sys.stderr)
        return 1
    lock_lines = lock.read_text().splitlines()
    pins = merge(lock_lines, frozen)
    comments = [line for line in lock_lines if line.startswith("#")]
    env_lines = environment.read_text().splitlines()
    head = env_lines[: env_lines.index(PIP_SECTION) + 1] if PIP_SECTION in env_lines else env_lines
    outputs = {
        lock: comments + pins,
        environment: head + [PIP_INDENT + pin for pin in pins],
    }
    for path, lines in outputs.items():  # both new files first, then both renames
        path.with_name(path.name + ".new").write_text("".join(f"{line}\n" for line in lines))
    for path in outputs:
        path.with_name(path.name + ".new").replace(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
