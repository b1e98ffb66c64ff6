"""Claims the prose makes about this run's numbers, checked on this run.

A notebook sentence such as "QAT beats PTQ at W3A3" is followed by
`claims.expect("QAT beats PTQ at W3A3", qat > ptq, f"QAT {qat:.1%}, PTQ {ptq:.1%}")`.
When the numbers of a run (another seed, other parameters) do not bear the sentence out, a
visible warning names the claim; nothing raises, so a sweep still finishes. `claims.summary()`
at the end of the notebook records `claims_checked` and `claims_failed`.

Claims are keyed by their text: running a cell twice checks the same claim again, it does not
count it twice.
"""

from __future__ import annotations

import warnings

from qnb.records import record

_results: dict[str, bool] = {}


class ClaimWarning(UserWarning):
    """A sentence of the notebook that this run's numbers do not support."""


def expect(claim: str, holds: object, detail: str = "") -> bool:
    """Check `claim` on this run: print `claim: holds` or warn `claim: does NOT hold`."""
    if not isinstance(claim, str) or not claim.strip():
        raise ValueError(f"claim must be a non-empty sentence, got {claim!r}")
    if not isinstance(detail, str):
        raise TypeError(f"detail must be a string, got {type(detail).__name__}: {detail!r}")
    ok = bool(holds)
    _results[claim] = ok
    said = f" ({detail})" if detail else ""
    if ok:
        print(f"claim holds on this run: {claim}{said}")
    else:
        with warnings.catch_warnings():  # every time, not once per place: a re-run shows it too
            warnings.simplefilter("always", ClaimWarning)
            warnings.warn(
                f"claim does NOT hold on this run: {claim}{said}. The text above was written for "
                "the committed defaults; read it against this run's numbers.",
                ClaimWarning,
                stacklevel=2,
            )
    return ok


def failed() -> list[str]:
    """The claims checked so far (in this kernel) that did not hold."""
    return [claim for claim, ok in _results.items() if not ok]


def summary() -> tuple[int, int]:
    """Record `claims_checked` and `claims_failed` for this run; return both."""
    checked, bad = len(_results), failed()
    record("claims_checked", checked)
    record("claims_failed", len(bad))
    for claim in bad:
        print(f"  failed: {claim}")
    return checked, len(bad)


def reset() -> None:
    """Forget the claims checked so far (for tests, or a notebook that starts over)."""
    _results.clear()
