"""Detection delays from polled alert states: which alert fired in which phase, how late."""

import pytest

from leafwatch.simulate.timeline import (
    Episode,
    PhaseSpan,
    detections,
    episodes,
    firing_at,
    missed,
    parse_rate,
    unexpected,
)

NONE: frozenset[str] = frozenset()


def states(*names: str) -> frozenset[str]:
    return frozenset(names)


@pytest.mark.parametrize(
    ("text", "rate"),
    [("5/s", 5.0), ("5", 5.0), ("120/m", 2.0), ("7200 / h", 2.0), ("0.5/sec", 0.5)],
)
def test_rates_are_read_per_second_minute_or_hour(text: str, rate: float) -> None:
    assert parse_rate(text) == pytest.approx(rate)


@pytest.mark.parametrize("text", ["", "fast", "5/d", "-1/s", "0/s"])
def test_a_rate_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        parse_rate(text)


def test_episodes_open_at_the_first_poll_seen_firing_and_close_at_the_first_not() -> None:
    samples = [
        (0.0, NONE),
        (1.0, states("A")),
        (2.0, states("A", "B")),
        (3.0, states("B")),
        (4.0, NONE),
        (5.0, states("A")),
    ]
    assert episodes(samples) == [
        Episode("A", 1.0, 3.0),
        Episode("B", 2.0, 4.0),
        Episode("A", 5.0, None),
    ]
    assert firing_at(episodes(samples), 2.5) == {"A", "B"}
    assert firing_at(episodes(samples), 3.0) == {"B"}


def test_the_delay_runs_from_the_start_of_the_phase_the_alert_fired_in() -> None:
    phases = [
        PhaseSpan(0, "warm-up", 0.0, 20.0),
        PhaseSpan(1, "20% errors", 20.0, 60.0, expect=("HighErrorRate",)),
    ]
    found = {"prometheus": [Episode("HighErrorRate", 47.0, None)]}
    (row,) = detections(phases, found)
    assert row.phase.name == "20% errors"
    assert row.expected
    assert row.delays == {"prometheus": 27.0}


def test_each_source_has_its_own_delay_and_a_silent_one_has_none() -> None:
    phases = [PhaseSpan(0, "worse model", 10.0, 70.0, expect=("ModelAccuracyDrop",))]
    found = {
        "prometheus": [Episode("ModelAccuracyDrop", 50.0, 60.0)],
        "alertmanager": [Episode("ModelAccuracyDrop", 52.0, None)],
        "leafwatch": [],
    }
    (row,) = detections(phases, found)
    assert row.delays == {"prometheus": 40.0, "alertmanager": 42.0, "leafwatch": None}
    assert row.fired


def test_an_expected_alert_that_never_fires_is_missed() -> None:
    phases = [PhaseSpan(0, "outage", 0.0, 30.0, expect=("APIDown",))]
    rows = detections(phases, {"prometheus": [Episode("HighLatency", 5.0, None)]})
    assert [row.alert for row in missed(rows)] == ["APIDown"]
    assert [row.alert for row in unexpected(rows)] == ["HighLatency"]


def test_an_alert_carried_over_from_an_earlier_phase_is_not_a_new_detection() -> None:
    phases = [
        PhaseSpan(0, "+300% latency", 0.0, 30.0, expect=("HighLatency",)),
        PhaseSpan(1, "recovery", 30.0, 50.0),
        PhaseSpan(2, "again", 50.0, 60.0, expect=("HighLatency",)),
    ]
    found = {"prometheus": [Episode("HighLatency", 12.0, None)]}
    rows = detections(phases, found)
    assert [(row.phase.index, row.alert) for row in rows] == [
        (0, "HighLatency"),
        (2, "HighLatency"),
    ]
    assert rows[0].delays == {"prometheus": 12.0}
    # Still firing when the third phase began: seen at once, flagged as such.
    assert rows[1].delays == {"prometheus": 0.0}
    assert rows[1].already_firing


def test_only_the_first_episode_of_an_alert_in_a_phase_counts() -> None:
    phases = [PhaseSpan(0, "flapping", 0.0, 100.0)]
    found = {"prometheus": [Episode("HighLatency", 10.0, 20.0), Episode("HighLatency", 40.0, None)]}
    (row,) = detections(phases, found)
    assert row.delays == {"prometheus": 10.0}
    assert not row.expected


def test_expected_alerts_come_first_then_the_others_by_delay() -> None:
    phases = [PhaseSpan(0, "errors", 0.0, 60.0, expect=("HighErrorRate",))]
    found = {
        "prometheus": [
            Episode("FaultInjectionActive", 2.0, None),
            Episode("AvailabilityBudgetBurnSlow", 20.0, None),
            Episode("HighErrorRate", 30.0, None),
        ]
    }
    rows = detections(phases, found)
    assert [row.alert for row in rows] == [
        "HighErrorRate",
        "FaultInjectionActive",
        "AvailabilityBudgetBurnSlow",
    ]
