"""Status round trips and Kubernetes-style conditions (pure)."""

from __future__ import annotations

import datetime as dt

from modelrollout.api import Phase
from modelrollout.status import (
    AnalysisStatus,
    CheckRecord,
    Condition,
    HistoryEntry,
    RolloutStatus,
    Verdict,
    set_condition,
)

T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def test_round_trip_is_lossless() -> None:
    status = RolloutStatus(
        phase=Phase.PROGRESSING, message="m", observed_generation=3, revision=2, candidate_version="2.0.0",
        candidate_model_uri="file:///m/2", stable_version="1.0.0", step_index=1, step_started_at=T0,
        started_at=T0, candidate_weight=10, last_handled_action="pause", target_kind="SeldonDeployment",
        target_name="iris", stable_predictor="main", candidate_predictor="main-candidate",
        stable_model_uri="file:///m/1", steps_hash="abc", serving_since=T0, weight_since=T0,
        promotion_started_at=T0,
        analysis=AnalysisStatus(last_run_at=T0, last_checks=(
            CheckRecord("success-rate", Verdict.FAIL, 0.93, "below", "q", "30s", min=0.99, at=T0, window_start=T0,
                        weight=10, failures=1),
            CheckRecord("latency", Verdict.INCONCLUSIVE, None, "no data", "q2", "30s", max=0.25, at=T0,
                        inconclusive=2))),
        conditions=(Condition("Progressing", "True", "StepAdvanced", "ok", T0, 3),),
        history=(HistoryEntry(1, "1.0.0", "file:///m/1", "Succeeded", "", T0, T0),),
    )
    assert RolloutStatus.from_dict(status.to_dict()) == status
    assert status.analysis.consecutive_failures == 1 and status.analysis.consecutive_inconclusive == 2


def test_empty_status_reads_as_unseen() -> None:
    assert RolloutStatus.from_dict(None).phase is None
    assert RolloutStatus.from_dict({"phase": "Bogus"}).phase is None


def test_condition_transition_time_moves_only_when_status_changes() -> None:
    later = T0 + dt.timedelta(minutes=5)
    first = set_condition((), Condition("Progressing", "True", "A"), T0)
    same = set_condition(first, Condition("Progressing", "True", "B", "new reason"), later)
    assert same[0].last_transition_time == T0 and same[0].reason == "B"
    flipped = set_condition(same, Condition("Progressing", "False", "C"), later)
    assert flipped[0].last_transition_time == later
    both = set_condition(flipped, Condition("SpecValid", "True", "Valid"), later)
    assert [c.type for c in both] == ["Progressing", "SpecValid"]


def test_history_is_bounded() -> None:
    status = RolloutStatus()
    for revision in range(25):
        status = status.with_history(HistoryEntry(revision, str(revision), "u", "Succeeded"))
    assert len(status.history) == 10 and status.history[-1].revision == 24
