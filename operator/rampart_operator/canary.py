"""The canary rollout as a state machine: pure, every input explicit, no I/O, no clock.

A rollout's whole state is a ``Rollout`` kept in ``status.canary``; the
operator reads it, gathers an ``Observed`` (what the spec asks for, whether
the canary's pods are up, an analysis verdict if one was due, firing alerts,
the promote/abort annotations), calls ``advance`` and writes the new state
back *before* touching any child. An operator restarted at any point
therefore resumes from the last written state: a step is neither repeated
(its weight is only ever raised after the state saying so is stored) nor
skipped (advancing needs the pause and a passing check recorded in it).

Phases::

    Initialized ──new revision──▶ Progressing ──last step passed / promote──▶ Promoting
         ▲                          │    ▲  │                                     │
         │                          │    └──┘ next step                           ▼
         │               failed checks, alert,                               Succeeded
         │               abort, deadline                                          │
         │                          ▼                                             │
         └────────────────────── RolledBack ◀──── alert within the bake window ───┘

Weights: while a step's canary pods are not all ready the traffic weight
stays where it was (0 at the start), so no router sends requests to pods that
cannot take them; ``step_started`` is set when the step's weight is applied,
and the pause counts from there.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from rampart_common.durations import format_duration, parse_duration

from .api.canary import CanarySpec

__all__ = [
    "ACTIVE",
    "Note",
    "Observed",
    "Policy",
    "Rollout",
    "Step",
    "Verdict",
    "advance",
    "analysis_due",
    "initial",
    "show_value",
]

Phase = Literal["Initialized", "Progressing", "Promoting", "Succeeded", "RolledBack"]
ACTIVE = frozenset({"Progressing", "Promoting"})


@dataclass(frozen=True)
class Step:
    weight: int
    pause: float = 0.0  # seconds at this weight before the next step may start


@dataclass(frozen=True)
class Policy:
    """``spec.canary`` with durations in seconds."""

    steps: tuple[Step, ...]
    interval: float = 60.0
    failure_limit: int = 2
    progress_deadline: float = 600.0
    analysis: bool = True  # False: steps advance on their pauses alone
    rollback_on_alerts: bool = True
    bake_window: float = 300.0
    # The range each analysis query covers: it must lie inside the current step, or
    # it would judge the previous step's traffic (or the previous revision's pods).
    window: float = 0.0

    @classmethod
    def from_spec(cls, canary: CanarySpec) -> Policy:
        analysis = canary.analysis
        return cls(
            steps=tuple(Step(step.weight, step.pause_seconds) for step in canary.steps),
            interval=parse_duration(analysis.interval),
            failure_limit=analysis.failure_limit,
            progress_deadline=parse_duration(analysis.progress_deadline),
            analysis=analysis.prometheus is not None,
            rollback_on_alerts=canary.rollback_on_alerts,
            bake_window=parse_duration(canary.bake_window),
            window=parse_duration(analysis.effective_window),
        )


@dataclass(frozen=True)
class Verdict:
    """One analysis: ``passed`` True or False, or None when there was no data."""

    at: float
    passed: bool | None
    values: dict[str, float] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()  # why it failed, or why it was inconclusive

    @property
    def summary(self) -> str:
        shown = ", ".join(f"{k}={show_value(k, v)}" for k, v in sorted(self.values.items()))
        result = {True: "passed", False: "failed", None: "inconclusive"}[self.passed]
        why = f" ({'; '.join(self.reasons)})" if self.reasons else ""
        return f"analysis {result}{': ' + shown if shown else ''}{why}"


@dataclass(frozen=True)
class Observed:
    now: float  # seconds since the epoch
    target: str  # the revision the spec asks for
    canary_ready: bool  # every canary pod the current step wants is available
    stable_ready: bool  # the stable Deployment has rolled out its current template
    verdict: Verdict | None = None  # given only when ``analysis_due`` said so
    firing: tuple[str, ...] = ()  # alert names firing for this HardenedService
    promote: bool = False  # the rampart.dev/promote annotation
    abort: bool = False  # the rampart.dev/abort annotation


@dataclass(frozen=True)
class Note:
    """Something worth an Event (and a log line)."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    # Why a rollout ended, in one word (alert, analysis, abort, progressDeadline),
    # for the rollouts metric: the message says it in full.
    cause: str = ""


@dataclass(frozen=True)
class Rollout:
    phase: Phase
    stable: str  # the revision the stable Deployment runs
    revision: str  # the revision being (or last) rolled out
    step: int = 0
    weight: int = 0  # percent of traffic routed to the canary now
    step_started: float | None = None  # when this step's weight was applied
    last_progress: float | None = None  # for the progress deadline
    last_analysis: float | None = None
    passed_checks: int = 0  # in this step
    failed_checks: int = 0  # in this rollout
    analysis: dict[str, Any] | None = None  # the last verdict, as status shows it
    promoted_at: float | None = None
    previous: str | None = None  # the stable revision before the last promotion
    rejected: str | None = None  # a revision rolled back; not retried until the spec changes
    message: str = ""

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE

    def to_status(self) -> dict[str, Any]:
        """Every field, unset ones as None, so a merge patch clears them too."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in TIMES and value is not None:
                value = _timestamp(value)
            out[_camel(f.name)] = value
        return out

    @classmethod
    def from_status(cls, status: dict[str, Any] | None) -> Rollout | None:
        if not status or "phase" not in status or "stable" not in status:
            return None
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            value = status.get(_camel(f.name))
            if value is None:
                continue
            values[f.name] = _epoch(value) if f.name in TIMES else value
        return cls(**values)


TIMES = frozenset({"step_started", "last_progress", "last_analysis", "promoted_at"})


def initial(revision: str) -> Rollout:
    """A HardenedService seen for the first time runs what its spec asks, unanalysed."""
    return Rollout(phase="Initialized", stable=revision, revision=revision)


def analysis_due(policy: Policy, state: Rollout, now: float) -> bool:
    """Whether the operator should query metrics before the next ``advance``."""
    return (
        policy.analysis
        and state.phase == "Progressing"
        and state.weight > 0
        and state.step_started is not None
        # A whole window of this step's traffic: right after a new canary starts, a
        # window reaching back would measure the last revision's canary pods.
        and now - state.step_started >= policy.window
        and (state.last_analysis is None or now - state.last_analysis >= policy.interval)
    )


Transition = tuple[Rollout, list[Note]]


def advance(policy: Policy, state: Rollout, seen: Observed) -> Transition:
    """The next state, and what happened, for one look at the world: the function
    of the rollout's phase decides."""
    # A phase this operator does not know (a status edited by hand) is read as at rest.
    return PHASES.get(state.phase, _initialized)(policy, state, seen)


def _initialized(policy: Policy, state: Rollout, seen: Observed) -> Transition:
    """The stable revision runs alone; a new target starts a canary."""
    if seen.target not in (state.stable, state.rejected):
        return _start(state, seen.target, seen.now)
    return state, []


def _succeeded(policy: Policy, state: Rollout, seen: Observed) -> Transition:
    """Promoted: within the bake window an alert still rolls the promotion back."""
    if (
        policy.rollback_on_alerts
        and seen.firing
        and state.previous is not None
        and state.promoted_at is not None
        and seen.now - state.promoted_at <= policy.bake_window
        and seen.target == state.stable
    ):
        after = format_duration(seen.now - state.promoted_at)
        reason = f"alert {', '.join(seen.firing)} fired {after} after promotion"
        return _replace(
            state,
            phase="RolledBack",
            stable=state.previous,
            previous=None,
            rejected=state.stable,
            promoted_at=None,
            message=f"rolled back {state.stable} to {state.previous}: {reason}",
        ), [
            Note(
                "Warning",
                "RolledBack",
                f"revision {state.stable} rolled back to {state.previous}: {reason}",
                "alert",
            )
        ]
    return _initialized(policy, state, seen)


def _rolled_back(policy: Policy, state: Rollout, seen: Observed) -> Transition:
    """The rejected revision is not retried until the spec moves off it."""
    if seen.target not in (state.stable, state.rejected):
        return _start(state, seen.target, seen.now)
    if seen.target == state.stable:
        settled = _replace(
            state,
            phase="Succeeded" if state.promoted_at else "Initialized",
            revision=state.stable,
            rejected=None,
            message="the spec is back at the stable revision",
        )
        return settled, [Note("Normal", "Settled", settled.message)]
    return state, []


def _start(state: Rollout, target: str, now: float) -> Transition:
    started = Rollout(
        phase="Progressing",
        stable=state.stable,
        revision=target,
        last_progress=now,
        promoted_at=state.promoted_at,
        previous=state.previous,
        rejected=state.rejected,
        message=f"starting the canary of revision {target}",
    )
    return started, [Note("Normal", "CanaryStarted", f"canary of revision {target} started")]


def _interrupted(policy: Policy, state: Rollout, seen: Observed) -> Transition | None:
    """What ends any active rollout at once: the abort annotation, a firing alert."""
    if seen.abort:
        return _roll_back(state, "aborted by the rampart.dev/abort annotation", "abort")
    if policy.rollback_on_alerts and seen.firing:
        return _roll_back(state, f"alert firing: {', '.join(seen.firing)}", "alert")
    return None


def _promoting(policy: Policy, state: Rollout, seen: Observed) -> Transition:
    """The stable pods take the new revision; done once they are ready. The stable
    revision already is the new one: a spec that changes again waits for the end."""
    interrupted = _interrupted(policy, state, seen)
    if interrupted is not None:
        return interrupted
    if not seen.stable_ready:
        return state, []
    done = _replace(
        state,
        phase="Succeeded",
        weight=0,
        step_started=None,
        promoted_at=seen.now,
        message=f"revision {state.revision} promoted",
    )
    return done, [Note("Normal", "Promoted", done.message)]


def _progressing(policy: Policy, state: Rollout, seen: Observed) -> Transition:
    """The canary walks its steps: each applied once its pods are ready, left after
    its pause and a passed analysis, until the last promotes."""
    if seen.target == state.stable:
        ended = _replace(state, phase="Succeeded" if state.promoted_at else "Initialized")
        ended = _replace(
            ended,
            revision=state.stable,
            weight=0,
            step=0,
            step_started=None,
            message="the spec is back at the stable revision; canary stopped",
        )
        return ended, [Note("Normal", "CanaryStopped", ended.message)]
    if seen.target != state.revision:
        restarted, started = _start(state, seen.target, seen.now)
        return restarted, [
            Note("Normal", "CanaryRestarted", f"revision {seen.target} replaces {state.revision}"),
            *started,
        ]
    interrupted = _interrupted(policy, state, seen)
    if interrupted is not None:
        return interrupted
    if seen.promote:
        return _promote(state, "promoted by the rampart.dev/promote annotation", seen.now)

    notes: list[Note] = []
    if seen.verdict is not None:
        state, notes = _judge(policy, state, seen.verdict)
        if state.phase == "RolledBack":
            return state, notes
    last_progress = state.last_progress if state.last_progress is not None else seen.now
    if seen.now - last_progress > policy.progress_deadline:
        waiting = (
            "the canary's pods never became ready"
            if state.step_started is None
            else "no conclusive analysis"
        )
        return _roll_back(
            state,
            f"progress deadline {format_duration(policy.progress_deadline)} exceeded: {waiting}",
            "progressDeadline",
        )
    step = policy.steps[state.step]
    if state.step_started is None:
        if not seen.canary_ready:
            return state, notes
        applied = _replace(
            state,
            weight=step.weight,
            step_started=seen.now,
            last_progress=seen.now,
            message=f"step {state.step + 1}/{len(policy.steps)}: {step.weight}% to the canary",
        )
        return applied, [*notes, Note("Normal", "CanaryWeight", applied.message)]
    paused = seen.now - state.step_started >= step.pause
    checked = not policy.analysis or state.passed_checks > 0
    if not (paused and checked):
        return state, notes
    if state.step + 1 == len(policy.steps):
        promoted, more = _promote(state, "every step passed", seen.now)
        return promoted, [*notes, *more]
    nxt = _replace(
        state,
        step=state.step + 1,
        step_started=None,
        passed_checks=0,
        last_progress=seen.now,
        message=f"step {state.step + 1} passed; scaling the canary for step {state.step + 2}",
    )
    return nxt, notes


PHASES: dict[str, Callable[[Policy, Rollout, Observed], Transition]] = {
    "Initialized": _initialized,
    "Progressing": _progressing,
    "Promoting": _promoting,
    "Succeeded": _succeeded,
    "RolledBack": _rolled_back,
}


def _judge(policy: Policy, state: Rollout, verdict: Verdict) -> tuple[Rollout, list[Note]]:
    shown = {
        "time": _timestamp(verdict.at),
        "result": {True: "Passed", False: "Failed", None: "NoData"}[verdict.passed],
        "values": {k: round(v, 6) for k, v in verdict.values.items()},
        "message": verdict.summary,
    }
    state = _replace(state, last_analysis=verdict.at, analysis=shown)
    if verdict.passed is None:
        return state, [Note("Normal", "AnalysisInconclusive", verdict.summary)]
    if verdict.passed:
        return _replace(state, passed_checks=state.passed_checks + 1, last_progress=verdict.at), [
            Note("Normal", "AnalysisPassed", verdict.summary)
        ]
    failed = state.failed_checks + 1
    state = _replace(state, failed_checks=failed)
    note = Note("Warning", "AnalysisFailed", f"{verdict.summary}; {failed}/{policy.failure_limit}")
    if failed >= policy.failure_limit:
        rolled, more = _roll_back(
            state,
            f"{failed} failed checks (limit {policy.failure_limit}): {verdict.summary}",
            "analysis",
        )
        return rolled, [note, *more]
    return state, [note]


def _roll_back(state: Rollout, reason: str, cause: str) -> tuple[Rollout, list[Note]]:
    if state.phase == "Promoting" and state.previous is not None:
        # The stable Deployment already took the new template: give it the old one back.
        state = _replace(state, stable=state.previous, previous=None)
    rolled = _replace(
        state,
        phase="RolledBack",
        weight=0,
        step_started=None,
        rejected=state.revision,
        message=f"revision {state.revision} rolled back: {reason}",
    )
    return rolled, [Note("Warning", "RolledBack", rolled.message, cause)]


def _promote(state: Rollout, reason: str, now: float) -> tuple[Rollout, list[Note]]:
    promoting = _replace(
        state,
        phase="Promoting",
        previous=state.stable,
        stable=state.revision,
        last_progress=now,
        message=f"promoting revision {state.revision}: {reason}",
    )
    return promoting, [Note("Normal", "Promoting", promoting.message)]


def _replace(state: Rollout, **changes: Any) -> Rollout:
    return dataclasses.replace(state, **changes)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _timestamp(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _epoch(value: str | float) -> float:
    if isinstance(value, int | float):
        return float(value)
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def show_value(name: str, value: float) -> str:
    if name == "errorRate":
        return f"{value:.2%}"
    if name == "latencyP95":
        return format_duration(value)
    return f"{value:g}"
