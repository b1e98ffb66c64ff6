"""Claims the prose makes about this run's numbers, checked on this run.

A notebook sentence such as "QAT beats PTQ at W3A3" is followed by
`claims.expect("QAT beats PTQ at W3A3", qat > ptq, f"QAT {qat:.1%}, PTQ {ptq:.1%}")`.
When the numbers of a run (another seed, other parameters) do not bear the sentence out, a
visible warning names the claim; nothing raises, so a sweep still finishes. `claims.summary()`
at the end of the notebook records `claims_checked`, `claims_failed`, `claims_skipped` and
`claims_timing_failed`.

Two kinds of claim:

- a **fact** (the default): a statement about accuracies, codes, counts, sizes. It never has an
  excuse: a failed fact is counted in `claims_failed`, and the tests fail on it.
- a **timing** claim (`timing=True`): a statement about a measured speed. A busy machine can
  break it, so a failed timing claim is counted apart, in `claims_timing_failed`.

A sentence guarded by a branch that does not run on this run's parameters is declared with
`claims.skip(claim, reason)`: it is counted in `claims_skipped` and printed as not checked,
never as true. A claim states the quantifier of its sentence ("on every seed" is checked on
every seed, not on the mean).

Claims are keyed by their text: running a cell twice checks the same claim again, it does not
count it twice. `claims.reset()` at the top of a notebook forgets the claims of an earlier run
in the same kernel.
"""

from __future__ import annotations

import warnings

from qnb.records import record

# claim -> "holds", "failed", "timing failed" or "skipped"
_results: dict[str, str] = {}


class ClaimWarning(UserWarning):
    """A sentence of the notebook that this run's numbers do not support."""


def _check_claim(claim: object) -> str:
    if not isinstance(claim, str) or not claim.strip():
        raise ValueError(f"claim must be a non-empty sentence, got {claim!r}")
    return claim


def expect(claim: str, holds: object, detail: str = "", *, timing: bool = False) -> bool:
    """Check `claim` on this run: print `claim: holds` or warn `claim: does NOT hold`.
    `timing=True` marks a claim about a measured speed (see the module docstring)."""
    _check_claim(claim)
    if not isinstance(detail, str):
        raise TypeError(f"detail must be a string, got {type(detail).__name__}: {detail!r}")
    if not isinstance(timing, bool):
        raise TypeError(f"timing must be True or False, got {timing!r}")
    ok = bool(holds)
    _results[claim] = "holds" if ok else ("timing failed" if timing else "failed")
    said = f" ({detail})" if detail else ""
    if ok:
        print(f"claim holds on this run: {claim}{said}")
    else:
        excuse = (" A timing claim: a busy machine can break it; re-run on a quiet one."
                  if timing else "")
        with warnings.catch_warnings():  # every time, not once per place: a re-run shows it too
            warnings.simplefilter("always", ClaimWarning)
            # warn_explicit with a module name for the place: the printed warning carries no
            # path of the kernel's temporary cell files, which differs on every run and machine
            warnings.warn_explicit(
                f"claim does NOT hold on this run: {claim}{said}. The text above was written for "
                f"the committed defaults; read it against this run's numbers.{excuse}",
                ClaimWarning,
                filename="qnb.claims",
                lineno=0,
            )
    return ok


def skip(claim: str, reason: str) -> None:
    """Declare that `claim` is not checked on this run (its branch does not run), and why."""
    _check_claim(claim)
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError(f"reason must say why the claim is not checked, got {reason!r}")
    _results[claim] = "skipped"
    print(f"claim not checked on this run: {claim} ({reason})")


def failed() -> list[str]:
    """The fact claims checked so far (in this kernel) that did not hold."""
    return [claim for claim, state in _results.items() if state == "failed"]


def summary() -> tuple[int, int]:
    """Record `claims_checked`, `claims_failed` (facts), `claims_skipped` and
    `claims_timing_failed` for this run; return (checked, failed)."""
    checked = sum(state != "skipped" for state in _results.values())
    bad = failed()
    timing = [claim for claim, state in _results.items() if state == "timing failed"]
    record("claims_checked", checked)
    record("claims_failed", len(bad))
    record("claims_skipped", sum(state == "skipped" for state in _results.values()))
    record("claims_timing_failed", len(timing))
    for claim in bad:
        print(f"  failed: {claim}")
    for claim in timing:
        print(f"  timing claim failed (busy machine?): {claim}")
    return checked, len(bad)


def reset() -> None:
    """Forget the claims checked so far (at the top of a notebook, and in tests)."""
    _results.clear()
