"""Rebuild data/text/ (the workbook's offline text corpus) from Python 3.11.7's standard library.

The corpus is source code of CPython's standard library (PSF License, see LICENSE-PSF.txt): the
top-level modules `Lib/*.py` of Python 3.11.7 whose size is 5,000 to 40,000 bytes, in name
order. Each file is one document, headed by a line `# ==== <name> ====`. Files are split by
position in that order: index % 20 == 7 -> validation, index % 20 == 14 -> test, the rest ->
train. Another Python version has other sources: the script refuses anything but 3.11.7, and
checks the result against the sha256 sums in data/README.md.

    python3.11 data/build_text_corpus.py        # writes data/text/{train,validation,test}.txt
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import sysconfig
from pathlib import Path

OUT = Path(__file__).resolve().parent / "text"
SIZES = (5_000, 40_000)
EXPECTED: dict[str, str | None] = {  # sha256 of each split, as shipped (see data/README.md)
    "train.txt": "f553f15b264e2dfd4ebad7580600e226a67178ec8e1ce01f832ae94c13922365",
    "validation.txt": "e761fd8f3bb28678efec9838e3108a7f3735bd441ce642597e0f4996949e8060",
    "test.txt": "b85d185ed8421c928fc3352e602dee3f1592dc276ecabf3cad15921fa552b185",
}


def sources() -> list[Path]:
    lib = Path(sysconfig.get_paths()["stdlib"])
    return [p for p in sorted(lib.glob("*.py")) if SIZES[0] <= p.stat().st_size <= SIZES[1]]


def split_of(index: int) -> str:
    return {7: "validation.txt", 14: "test.txt"}.get(index % 20, "train.txt")


def main() -> None:
    if sys.version_info[:3] != (3, 11, 7):
        version = sys.version.split()[0]
        sys.exit(f"the corpus is Python 3.11.7's standard library; this Python is {version}")
    OUT.mkdir(exist_ok=True)
    parts: dict[str, list[bytes]] = {name: [] for name in EXPECTED}
    for index, path in enumerate(sources()):
        parts[split_of(index)].append(f"# ==== {path.name} ====\n".encode() + path.read_bytes())
    for name, docs in parts.items():
        blob = b"\n".join(docs)
        (OUT / name).write_bytes(blob)
        digest = hashlib.sha256(blob).hexdigest()
        want = EXPECTED[name]
        state = "" if want is None else (" ok" if digest == want else f" MISMATCH (want {want})")
        print(f"{name:15s} {len(docs):3d} files {len(blob):9,d} bytes sha256 {digest}{state}")
    shutil.copyfile(Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt", OUT / "LICENSE-PSF.txt")


if __name__ == "__main__":
    main()
