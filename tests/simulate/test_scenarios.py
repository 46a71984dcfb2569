"""The scenarios as data: what each phase does, what it expects, how time is scaled."""

from pathlib import Path

import pytest

from leafwatch.model.labels import CLASS_NAMES
from leafwatch.simulate.scenarios import (
    LATE_STAGES,
    SCENARIOS,
    Phase,
    Traffic,
    added_latency_ms,
    get_scenario,
    scaled_seconds,
    worse_permutation,
)
from leafwatch.stack import load_yaml

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules"


def shipped_alerts() -> set[str]:
    """Every alert name in the shipped rule files."""
    return {
        rule["alert"]
        for path in RULES.glob("*.yml")
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def test_every_scenario_the_issue_names_exists() -> None:
    assert set(SCENARIOS) == {
        "baseline",
        "latency",
        "errors",
        "accuracy",
        "drift",
        "label-shift",
        "outage",
        "story",
    }


def test_baseline_expects_nothing_and_changes_nothing() -> None:
    baseline = get_scenario("baseline")
    assert all(not phase.expect for phase in baseline.phases)
    assert not baseline.needs_admin
    assert not baseline.needs_model_registry
    assert not baseline.needs_outage


def test_every_expected_alert_is_a_shipped_rule() -> None:
    expected = {alert for s in SCENARIOS.values() for phase in s.phases for alert in phase.expect}
    assert expected <= shipped_alerts()


def test_the_latency_scenario_slows_by_a_fifth_then_by_three_times_the_reference() -> None:
    faults = [phase for phase in get_scenario("latency").phases if phase.uses_fault_switch]
    assert [added_latency_ms(phase, reference_ms=500) for phase in faults] == [100, 1500]
    # +20% of a 500 ms service stays within the 1 s objective: only the drill itself is flagged.
    assert faults[0].expect == ("FaultInjectionActive",)
    assert "HighLatency" in faults[1].expect


def test_every_fault_switch_phase_expects_the_drill_to_announce_itself() -> None:
    for scenario in SCENARIOS.values():
        for phase in scenario.phases:
            assert phase.uses_fault_switch == ("FaultInjectionActive" in phase.expect), phase.name


def test_the_errors_scenario_fails_five_then_twenty_percent() -> None:
    faults = [phase for phase in get_scenario("errors").phases if phase.uses_fault_switch]
    assert [phase.error_ratio for phase in faults] == [0.05, 0.2]
    assert "HighErrorRate" in faults[1].expect


def test_the_accuracy_scenario_promotes_a_worse_model_then_restores_it() -> None:
    phases = get_scenario("accuracy").phases
    worse = next(index for index, phase in enumerate(phases) if phase.promote_worse_model)
    assert phases[worse].expect == ("ModelAccuracyDrop",)
    assert phases[worse + 1].restore_model
    assert phases[worse + 1].until == "rollback"
    assert all(phase.traffic.feedback_share >= 0.5 for phase in phases)


def test_drift_changes_the_camera_and_label_shift_the_class_mix() -> None:
    drift = get_scenario("drift")
    assert drift.cameras == ("field", "new-camera")
    shifted = [p.traffic for p in get_scenario("label-shift").phases if p.expect]
    assert shifted == [Traffic(class_weights=LATE_STAGES)]
    late = sum(LATE_STAGES[5:]) / sum(LATE_STAGES)
    assert late > 0.5 > 2 / len(CLASS_NAMES)


def test_the_story_chains_every_fault_in_the_seeds_order_of_days() -> None:
    story = get_scenario("story")
    days = [phase.day for phase in story.phases if phase.day is not None]
    assert days == sorted(days)
    assert days[0] == 1
    for name in ("latency", "errors", "accuracy", "drift", "label-shift", "outage"):
        fault_phases = [p for p in get_scenario(name).phases if p.expect]
        assert all(phase in story.phases for phase in fault_phases), name


def test_speed_divides_production_time() -> None:
    phase = Phase("steady", 1800)
    assert scaled_seconds(phase, 1) == 1800
    assert scaled_seconds(phase, 30) == 60
    with pytest.raises(ValueError, match="speed"):
        scaled_seconds(phase, 0)


def test_the_worse_model_swaps_neighbouring_late_stages_and_keeps_the_rest() -> None:
    order = worse_permutation()
    assert sorted(order) == list(range(len(CLASS_NAMES)))
    wrong = [index for index, source in enumerate(order) if index != source]
    assert wrong == [3, 4, 5, 6]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seconds": 0}, "seconds"),
        ({"seconds": 60, "error_ratio": 1.5}, "error_ratio"),
        ({"seconds": 60, "until": "fired"}, "expects none"),
    ],
)
def test_a_phase_refuses_what_cannot_run(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Phase("bad", **kwargs)  # type: ignore[arg-type]


def test_traffic_refuses_a_class_mix_of_the_wrong_length_or_all_zero() -> None:
    with pytest.raises(ValueError, match="7 non-negative"):
        Traffic(class_weights=(1.0, 2.0))
    with pytest.raises(ValueError, match="all be zero"):
        Traffic(class_weights=(0.0,) * 7)


def test_an_unknown_scenario_is_named_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown scenario 'flood'; one of baseline"):
        get_scenario("flood")
