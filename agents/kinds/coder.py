"""The coder agent: runs `params.code` (Python) in the sandbox (agents.sandbox)
after the operator's code policy (agents.policy) allows it. A preview checks
the policy and says what would run; committing it runs it."""

from __future__ import annotations

from typing import Any

from agents.policy import check_coder_code
from agents.runs import Run, TaskTimedOut
from agents.sandbox import run_python, sandbox_limits
from agents.violations import record_violation
from kimberly.api.errors import ApplicationError, invalid_field
from kimberly.context import Context
from users.models import User

# The sandbox's wall clock ends this long before the task's soft time limit, so
# the program's own time-out is what a user sees.
MARGIN_SECONDS = 2.0
# What each sandbox outcome makes of the task (ok and error: the program ran).
FAILED_OUTCOMES = (
    "cpu_limit",
    "memory_limit",
    "output_limit",
    "file_limit",
    "killed",
    "cancelled",  # the task says cancelled already; this result is not kept
)


class SandboxViolation(ApplicationError):
    code = "sandbox_violation"
    status = 403


class SandboxTimeout(TaskTimedOut):
    code = "sandbox_timeout"
    status = 408


def _policy(*, ctx: Context, user: User, agent: str, code: str) -> None:
    """Refuse code the operator's policy denies: audited, counted, 403."""
    violations = check_coder_code(code)  # 400 invalid_code / code_too_large
    if not violations:
        return
    found = [{"rule": v.rule, "detail": v.detail, "line": v.line} for v in violations]
    record_violation(
        ctx=ctx, user=user, agent=agent, rule="code", details={"violations": found[:20]}
    )
    raise SandboxViolation(
        f"The code policy refuses this program: {violations[0].detail}.",
        details={"violations": found[:20]},
    )


def validate(*, ctx: Context, user: User, task: str, params: dict[str, Any]) -> None:
    code = params.get("code")
    if not isinstance(code, str) or not code.strip():
        raise invalid_field("params.code", "must be the Python program to run")
    _policy(ctx=ctx, user=user, agent="coder", code=code)


def run(run: Run) -> dict[str, Any]:
    code: str = run.params["code"]
    with run.step("policy"):
        # Again: the policy may have changed while the task waited.
        _policy(ctx=run.ctx, user=run.user, agent=run.agent.name, code=code)
    limits = sandbox_limits(max(run.task.timeout - MARGIN_SECONDS, 1.0))
    if run.preview:
        return {"will_run": True, "policy": "allowed", "limits": limits.__dict__}
    with run.step("sandbox", limits=limits.__dict__) as step:
        res = run_python(code, limits, should_stop=run.stopped)
        step.detail.update(outcome=res.outcome, startup_ms=res.startup_ms)
    result = {
        "outcome": res.outcome,
        "exit_status": res.exit_status,
        "signal": res.signal,
        "stdout": res.stdout,
        "stderr": res.stderr,
        "truncated": res.truncated,
        "duration_ms": res.duration_ms,
        "startup_ms": res.startup_ms,
    }
    if res.outcome == "timeout":
        raise SandboxTimeout(
            f"The program ran past {limits.wall_seconds:.0f} s and was stopped.",
            details=result,
        )
    if res.outcome in FAILED_OUTCOMES:
        raise ApplicationError(
            f"The program was stopped: {res.outcome.replace('_', ' ')}.",
            code=f"sandbox_{res.outcome}",
            details=result,
        )
    return result
