"""The rollout state machine, transition by transition; pure, no cluster, no clock."""

from __future__ import annotations

import dataclasses

import pytest

from rampart_operator.api.canary import CanarySpec
from rampart_operator.canary import (
    Observed,
    Policy,
    Rollout,
    Step,
    Verdict,
    advance,
    analysis_due,
    initial,
)

POLICY = Policy(
    steps=(Step(10, 60.0), Step(50, 60.0), Step(100, 0.0)),
    interval=30.0,
    failure_limit=2,
    progress_deadline=300.0,
    bake_window=120.0,
)
PASS = True
FAIL = False
NO_DATA = None


def look(
    now: float,
    target: str = "v2",
    *,
    canary_ready: bool = True,
    stable_ready: bool = True,
    verdict: bool | str | None = "none",
    firing: tuple[str, ...] = (),
    promote: bool = False,
    abort: bool = False,
) -> Observed:
    given = None if verdict == "none" else Verdict(now, verdict, {"errorRate": 0.0})  # type: ignore[arg-type]
    return Observed(
        now, target, canary_ready, stable_ready, given, firing, promote=promote, abort=abort
    )


def started() -> Rollout:
    state, notes = advance(POLICY, initial("v1"), look(1000.0, canary_ready=False))
    assert [n.reason for n in notes] == ["CanaryStarted"]
    return state


def at_step(step: int) -> Rollout:
    """A rollout whose step ``step`` has its weight applied at t=2000."""
    state = started()
    state = dataclasses.replace(state, step=step, last_progress=2000.0)
    state, _ = advance(POLICY, state, look(2000.0))
    assert state.step_started == 2000.0
    return state


def test_same_revision_does_nothing():
    state = initial("v1")
    assert advance(POLICY, state, look(1000.0, target="v1")) == (state, [])


def test_new_revision_starts_at_weight_zero_until_the_canary_is_ready():
    state = started()
    assert (state.phase, state.stable, state.revision, state.weight) == (
        "Progressing",
        "v1",
        "v2",
        0,
    )
    waiting, notes = advance(POLICY, state, look(1010.0, canary_ready=False))
    assert waiting == state
    assert notes == []
    ready, notes = advance(POLICY, state, look(1020.0))
    assert (ready.weight, ready.step_started) == (10, 1020.0)
    assert [n.reason for n in notes] == ["CanaryWeight"]


def test_a_step_needs_its_pause_and_a_passing_check():
    state = at_step(0)
    # A pass before the pause is over does not advance.
    early, _ = advance(POLICY, state, look(2030.0, verdict=PASS))
    assert (early.step, early.passed_checks) == (0, 1)
    # The pause over, without a pass in this step, does not advance either.
    unchecked, _ = advance(POLICY, state, look(2070.0))
    assert unchecked.step == 0
    # Pause over and a pass recorded: next step, whose weight waits for its pods.
    nxt, _ = advance(POLICY, early, look(2061.0))
    assert (nxt.step, nxt.weight, nxt.step_started, nxt.passed_checks) == (1, 10, None, 0)
    scaled, _ = advance(POLICY, nxt, look(2062.0, canary_ready=False))
    assert scaled.weight == 10
    applied, _ = advance(POLICY, nxt, look(2063.0))
    assert (applied.weight, applied.step_started) == (50, 2063.0)


def test_without_analysis_steps_advance_on_their_pauses():
    policy = dataclasses.replace(POLICY, analysis=False)
    state = at_step(0)
    assert advance(policy, state, look(2059.0))[0].step == 0
    assert advance(policy, state, look(2060.0))[0].step == 1


def test_no_data_neither_advances_nor_fails():
    state = at_step(0)
    after, notes = advance(POLICY, state, look(2070.0, verdict=NO_DATA))
    assert (after.step, after.passed_checks, after.failed_checks) == (0, 0, 0)
    assert after.last_analysis == 2070.0
    assert after.analysis is not None
    assert after.analysis["result"] == "NoData"
    assert [n.reason for n in notes] == ["AnalysisInconclusive"]


def test_progress_deadline_turns_endless_no_data_into_a_rollback():
    state = at_step(0)
    now = 2000.0
    while state.phase == "Progressing":
        now += POLICY.interval
        state, _notes = advance(POLICY, state, look(now, verdict=NO_DATA))
    assert state.phase == "RolledBack"
    assert now - 2000.0 > POLICY.progress_deadline
    assert "progress deadline 5m exceeded: no conclusive analysis" in state.message
    assert (state.weight, state.rejected) == (0, "v2")


def test_canary_pods_that_never_come_up_hit_the_deadline():
    state = started()
    state, _ = advance(POLICY, state, look(1000.0 + 299.0, canary_ready=False))
    assert state.phase == "Progressing"
    state, _ = advance(POLICY, state, look(1000.0 + 301.0, canary_ready=False))
    assert state.phase == "RolledBack"
    assert "pods never became ready" in state.message


def test_failed_checks_up_to_the_limit_roll_back():
    state = at_step(0)
    once, notes = advance(POLICY, state, look(2030.0, verdict=FAIL))
    assert (once.phase, once.failed_checks) == ("Progressing", 1)
    assert [n.reason for n in notes] == ["AnalysisFailed"]
    twice, notes = advance(POLICY, once, look(2060.0, verdict=FAIL))
    assert (twice.phase, twice.weight, twice.rejected, twice.stable) == (
        "RolledBack",
        0,
        "v2",
        "v1",
    )
    assert [n.reason for n in notes] == ["AnalysisFailed", "RolledBack"]
    assert "2 failed checks (limit 2)" in twice.message


def test_a_rejected_revision_is_not_retried_but_a_new_one_is():
    state = dataclasses.replace(at_step(0), failed_checks=1)
    rolled, _ = advance(POLICY, state, look(2030.0, verdict=FAIL))
    assert advance(POLICY, rolled, look(3000.0, target="v2")) == (rolled, [])
    again, _notes = advance(POLICY, rolled, look(3000.0, target="v3"))
    assert (again.phase, again.revision, again.failed_checks, again.step) == (
        "Progressing",
        "v3",
        0,
        0,
    )
    settled, _ = advance(POLICY, rolled, look(3000.0, target="v1"))
    assert (settled.phase, settled.rejected) == ("Initialized", None)


def test_abort_during_a_pause_rolls_back():
    state = at_step(1)
    rolled, _notes = advance(POLICY, state, look(2010.0, abort=True))
    assert (rolled.phase, rolled.weight) == ("RolledBack", 0)
    assert "rampart.dev/abort" in rolled.message


def test_promote_during_analysis_skips_the_remaining_steps():
    state = at_step(0)
    promoting, notes = advance(POLICY, state, look(2010.0, promote=True))
    assert (promoting.phase, promoting.stable, promoting.previous) == ("Promoting", "v2", "v1")
    assert [n.reason for n in notes] == ["Promoting"]


def test_the_last_step_promotes_and_promotion_waits_for_the_stable_pods():
    state = at_step(2)
    passed, _ = advance(POLICY, state, look(2030.0, verdict=PASS))
    assert (passed.phase, passed.stable, passed.weight) == ("Promoting", "v2", 100)
    waiting, _ = advance(POLICY, passed, look(2031.0, stable_ready=False))
    assert waiting == passed
    done, notes = advance(POLICY, passed, look(2040.0))
    assert (done.phase, done.weight, done.promoted_at, done.stable) == (
        "Succeeded",
        0,
        2040.0,
        "v2",
    )
    assert [n.reason for n in notes] == ["Promoted"]


def test_a_firing_alert_rolls_back_at_once_unless_told_not_to():
    state = at_step(1)
    rolled, _notes = advance(POLICY, state, look(2001.0, firing=("RampartHighErrorRate",)))
    assert (rolled.phase, rolled.weight) == ("RolledBack", 0)
    assert "RampartHighErrorRate" in rolled.message
    patient = dataclasses.replace(POLICY, rollback_on_alerts=False)
    kept, _ = advance(patient, state, look(2001.0, firing=("RampartHighErrorRate",)))
    assert kept.phase == "Progressing"


def test_an_alert_while_promoting_gives_the_stable_pods_their_old_template_back():
    state = at_step(2)
    promoting, _ = advance(POLICY, state, look(2010.0, promote=True))
    rolled, _ = advance(POLICY, promoting, look(2011.0, stable_ready=False, firing=("X",)))
    assert (rolled.phase, rolled.stable, rolled.rejected) == ("RolledBack", "v1", "v2")


def test_an_alert_in_the_bake_window_rolls_back_to_the_previous_revision():
    promoted = Rollout(
        phase="Succeeded", stable="v2", revision="v2", previous="v1", promoted_at=5000.0
    )
    rolled, notes = advance(POLICY, promoted, look(5100.0, firing=("RampartHighErrorRate",)))
    assert (rolled.phase, rolled.stable, rolled.rejected) == ("RolledBack", "v1", "v2")
    assert [n.reason for n in notes] == ["RolledBack"]
    # Past the bake window the same alert is for humans, not for a rollback.
    assert advance(POLICY, promoted, look(5121.0, firing=("X",))) == (promoted, [])


def test_a_spec_back_at_stable_stops_the_canary():
    state = at_step(1)
    stopped, notes = advance(POLICY, state, look(2010.0, target="v1"))
    assert (stopped.phase, stopped.weight, stopped.revision) == ("Initialized", 0, "v1")
    assert [n.reason for n in notes] == ["CanaryStopped"]


def test_a_newer_revision_mid_rollout_starts_over():
    state = dataclasses.replace(at_step(1), failed_checks=1)
    restarted, notes = advance(POLICY, state, look(2010.0, target="v3"))
    assert (restarted.revision, restarted.step, restarted.weight, restarted.failed_checks) == (
        "v3",
        0,
        0,
        0,
    )
    assert [n.reason for n in notes] == ["CanaryRestarted", "CanaryStarted"]


def test_analysis_is_due_only_with_traffic_on_the_canary_and_once_per_interval():
    assert not analysis_due(POLICY, started(), 1000.0)  # weight 0
    state = at_step(0)
    assert analysis_due(POLICY, state, 2000.0)
    checked, _ = advance(POLICY, state, look(2010.0, verdict=PASS))
    assert not analysis_due(POLICY, checked, 2039.0)
    assert analysis_due(POLICY, checked, 2040.0)
    assert not analysis_due(dataclasses.replace(POLICY, analysis=False), state, 2000.0)


def test_analysis_waits_for_a_whole_window_of_the_steps_own_traffic():
    # Before that, its queries would reach back into the previous step or revision.
    windowed = dataclasses.replace(POLICY, window=20.0)
    state = at_step(0)  # weight applied at t=2000
    assert not analysis_due(windowed, state, 2019.0)
    assert analysis_due(windowed, state, 2020.0)
    analysis = {"interval": "10s", "window": "45s", "prometheus": {"url": "http://p"}}
    spec = {"steps": [{"weight": 10}], "analysis": analysis}
    assert Policy.from_spec(CanarySpec.model_validate(spec)).window == 45.0
    del analysis["window"]
    assert (
        Policy.from_spec(CanarySpec.model_validate(spec)).window == 10.0
    )  # the window is the interval by default


def walk(restart: bool) -> list[tuple[str, int, int]]:
    """A whole rollout, one look every 10 s; with ``restart`` the state goes through status."""
    state = initial("v1")
    trail = []
    now = 1000.0
    for _ in range(100):
        due = analysis_due(POLICY, state, now)
        state, _ = advance(POLICY, state, look(now, verdict=PASS if due else "none"))
        if restart:  # a new operator process reads what the last one stored
            stored = state.to_status()
            state = Rollout.from_status(stored)  # type: ignore[assignment]
        trail.append((state.phase, state.step, state.weight))
        now += 10.0
        if state.phase == "Succeeded":
            break
    return trail


def test_a_restarted_operator_neither_repeats_nor_skips_a_step():
    resumed = walk(restart=True)
    assert resumed == walk(restart=False)
    weights = [w for _, _, w in resumed]
    assert [w for i, w in enumerate(weights) if i == 0 or w != weights[i - 1]] == [
        0,
        10,
        50,
        100,
        0,
    ]
    assert resumed[-1][0] == "Succeeded"


def test_status_round_trip_keeps_sub_second_times():
    state = dataclasses.replace(at_step(0), last_analysis=2000.123456)
    stored = state.to_status()
    assert stored["stepStarted"].endswith("Z")
    assert stored["promotedAt"] is None
    assert Rollout.from_status(stored) == state


@pytest.mark.parametrize("missing", [None, {}, {"phase": "Progressing"}])
def test_no_stored_rollout_reads_as_none(missing):
    assert Rollout.from_status(missing) is None


def test_policy_from_spec_reads_durations_and_defaults():
    policy = Policy.from_spec(
        CanarySpec.model_validate(
            {
                "steps": [{"weight": 10, "pause": "5m"}, {"weight": 100}],
                "analysis": {"interval": "30s", "prometheus": {"url": "http://p:9090"}},
            }
        )
    )
    assert policy.steps == (Step(10, 300.0), Step(100, 0.0))
    assert (policy.interval, policy.failure_limit, policy.progress_deadline) == (30.0, 2, 600.0)
    assert policy.analysis
    assert policy.rollback_on_alerts
    assert policy.bake_window == 300.0
    assert not Policy.from_spec(CanarySpec.model_validate({"steps": [{"weight": 100}]})).analysis


def test_a_new_revision_during_promotion_waits_for_the_promotion_to_finish():
    promoting, _ = advance(POLICY, at_step(2), look(2010.0, promote=True))
    still, _ = advance(POLICY, promoting, look(2011.0, target="v3", stable_ready=False))
    assert (still.phase, still.stable) == ("Promoting", "v2")
    done, _ = advance(POLICY, still, look(2012.0, target="v3"))
    assert done.phase == "Succeeded"
    nxt, _ = advance(POLICY, done, look(2013.0, target="v3"))
    assert (nxt.phase, nxt.stable, nxt.revision) == ("Progressing", "v2", "v3")


def test_every_phase_has_its_function_and_an_unknown_one_is_read_as_at_rest():
    from typing import get_args

    from rampart_operator.canary import PHASES, Phase

    assert set(PHASES) == set(get_args(Phase))
    edited = dataclasses.replace(initial("v1"), phase="Paused")  # a status edited by hand
    state, notes = advance(POLICY, edited, look(0.0))
    assert state.phase == "Progressing"
    assert state.revision == "v2"
    assert [n.reason for n in notes] == ["CanaryStarted"]
