"""Failure budgets: whether a run that skipped or failed some items still counts as a success (exit 0) or not.

Every command that processes many items (translate, filter, synthesize, train's data, evaluate) ends with
`check_failure_budget`: nothing usable, or a failed share above `max_failure_rate`, stops it with a one-line
summary and a non-zero exit code, after its outputs and report are written (a rerun resumes; nothing is lost).
"""

from __future__ import annotations

from arastory.errors import ArastoryError


class BudgetExceeded(ArastoryError):
    """Too little succeeded: exit code 1 when items failed (a rerun retries them), 2 when the input was unusable."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def check_failure_budget(
    command: str,
    succeeded: int,
    failed: int,
    max_failure_rate: float,
    *,
    already_done: int = 0,
    noun: str = "items",
    detail: str = "",
    key: str = "max_failure_rate",
    failed_are_input: bool = False,
) -> str:
    """A one-line summary when within budget; raises BudgetExceeded otherwise.

    `succeeded`/`failed` count this run's items (skipped bad input counts as failed); `already_done` counts
    items finished by an earlier run, so a rerun with nothing left to do is a success, but an empty input is not.
    `failed_are_input`: the failures are bad input (exit 2: fix the data), not failed requests (exit 1: rerun).
    """
    if not 0 <= max_failure_rate <= 1:
        from arastory.errors import ConfigError

        raise ConfigError(key, f"must be in [0, 1], got {max_failure_rate}")
    attempted = succeeded + failed
    detail = f" ({detail})" if detail else ""
    if attempted == 0:
        if already_done:
            return f"{command}: nothing left to do: all {already_done} {noun} were done by an earlier run"
        raise BudgetExceeded(f"{command}: no {noun} to process: the input is empty{detail}", exit_code=2)
    rate = failed / attempted
    if failed_are_input:
        summary = f"{command}: {failed} of {attempted} {noun} unusable ({rate:.1%}){detail}"
        advice = f"fix the input or raise {key}"
    else:
        summary = f"{command}: {succeeded} of {attempted} {noun} succeeded, {failed} did not ({rate:.1%}){detail}"
        advice = "outputs so far are kept; rerun the same command to retry the rest"
    if succeeded == 0 or rate > max_failure_rate:
        reason = "nothing usable" if succeeded == 0 else f"more than {key}={max_failure_rate:g}"
        raise BudgetExceeded(f"{summary}: {reason}; {advice}", exit_code=2 if failed_are_input else 1)
    return summary
