"""The scenarios, as pure descriptions: phases of traffic, the fault each one brings, what fires.

Durations are in production time (the shipped rules' time); `--speed` divides them, and should
equal the time scale of the Prometheus rules (`leafwatch stack up --time-scale`). A phase may end
sooner: once the alerts it expects fire (`until="fired"`); once the alerts the scenario caused
have resolved, slow budget burns aside (`until="resolved"`); or once LeafWatch serves another
model version than the phase found (`until="rollback"`).
"""

from dataclasses import dataclass, field
from typing import Literal

from leafwatch.model.labels import NUM_CLASSES

Camera = Literal["field", "new-camera"]
Until = Literal["time", "fired", "resolved", "rollback"]

MINUTE = 60.0
HOUR = 3600.0

UNIFORM: tuple[float, ...] = (1.0,) * NUM_CLASSES
# A wet season on neglected farms: most leaves photographed are at late stages.
LATE_STAGES: tuple[float, ...] = (0.05, 0.05, 0.05, 0.1, 0.15, 0.3, 0.3)

# The worse model confuses neighbouring late stages: 4 of the 7 classes come out wrong.
WORSE_MODEL_SWAPS: tuple[tuple[int, int], ...] = ((3, 4), (5, 6))

# Alert names, as in deploy/prometheus/rules/. Every phase that uses the fault switch expects
# FaultInjectionActive: the drill announces itself.
FAULT_INJECTION = "FaultInjectionActive"
# Error-budget tickets over 3 days: they resolve hours after a fault, so recoveries do not wait.
LINGERING = ("AvailabilityBudgetBurnSlow", "LatencyBudgetBurnSlow")


@dataclass(frozen=True)
class Traffic:
    """What the simulated users send: which camera, which leaves, how often they give feedback."""

    camera: Camera = "field"
    class_weights: tuple[float, ...] = UNIFORM
    # Share of predictions the simulator sends a verdict on (with the true class).
    feedback_share: float = 0.3

    def __post_init__(self) -> None:
        if len(self.class_weights) != NUM_CLASSES or min(self.class_weights) < 0:
            raise ValueError(f"class_weights must be {NUM_CLASSES} non-negative numbers")
        if sum(self.class_weights) <= 0:
            raise ValueError("class_weights must not all be zero")
        if not 0 <= self.feedback_share <= 1:
            raise ValueError(f"feedback_share must be in [0, 1], got {self.feedback_share}")


@dataclass(frozen=True)
class Phase:
    """A stretch of traffic under one set of conditions."""

    name: str
    seconds: float  # production time; the longest the phase lasts
    traffic: Traffic = field(default_factory=Traffic)
    # Latency added to POST /api/v1/predict, as a share of the reference latency (0.2 = +20%).
    latency: float = 0.0
    error_ratio: float = 0.0  # share of predictions answered 500 by the fault switch
    promote_worse_model: bool = False  # on entry: register and serve a worse model version
    restore_model: bool = False  # on exit: if the worse model still serves, roll it back
    outage: bool = False  # LeafWatch stops answering (its process is paused)
    expect: tuple[str, ...] = ()  # alerts that should fire during this phase
    until: Until = "time"
    day: int | None = None  # the seed's story: the day this happens

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ValueError(f"phase {self.name!r}: seconds must be positive")
        if self.latency < 0 or not 0 <= self.error_ratio <= 1:
            raise ValueError(f"phase {self.name!r}: latency >= 0 and error_ratio in [0, 1]")
        if self.until == "fired" and not self.expect:
            raise ValueError(f"phase {self.name!r} waits for alerts but expects none")

    @property
    def uses_fault_switch(self) -> bool:
        """Whether the phase injects latency or errors through /api/v1/admin/faults."""
        return self.latency > 0 or self.error_ratio > 0


@dataclass(frozen=True)
class Scenario:
    """A named sequence of phases."""

    name: str
    summary: str
    phases: tuple[Phase, ...]

    @property
    def needs_admin(self) -> bool:
        """Whether the scenario changes LeafWatch through its admin endpoints."""
        return any(p.uses_fault_switch or p.promote_worse_model for p in self.phases)

    @property
    def needs_model_registry(self) -> bool:
        """Whether the scenario registers a model version."""
        return any(phase.promote_worse_model for phase in self.phases)

    @property
    def needs_outage(self) -> bool:
        """Whether the scenario pauses LeafWatch's process."""
        return any(phase.outage for phase in self.phases)

    @property
    def cameras(self) -> tuple[Camera, ...]:
        """The cameras the traffic uses, in order of first use."""
        return tuple(dict.fromkeys(phase.traffic.camera for phase in self.phases))


def _warm_up(seconds: float = 10 * MINUTE, traffic: Traffic | None = None) -> Phase:
    return Phase("warm-up", seconds, traffic=traffic or Traffic())


# Recoveries from service faults last up to 30 minutes: the fast budget burns' second window
# looks back 30 minutes, so they resolve that long after the fault ends.
def _recovery(seconds: float, traffic: Traffic | None = None) -> Phase:
    return Phase("recovery", seconds, traffic=traffic or Traffic(), until="resolved")


# With +20% every answer still comes well within the 1 s objective: no alert should say so.
LATENCY = (
    Phase("+20% latency", 15 * MINUTE, latency=0.2, expect=(FAULT_INJECTION,), day=3),
    Phase(
        "+300% latency",
        30 * MINUTE,
        latency=3.0,
        expect=("HighLatency", "LatencyBudgetBurnFast", FAULT_INJECTION),
        until="fired",
        day=3,
    ),
)
# 5% of predictions is under 5% of all requests (feedback is not failed): below HighErrorRate.
# The fast burn compares the last hour with 14.4 times the budget (7.2% failed): up to an hour,
# so that the window fills with the fault whatever came before it.
ERRORS = (
    Phase("5% errors", 20 * MINUTE, error_ratio=0.05, expect=(FAULT_INJECTION,), day=10),
    Phase(
        "20% errors",
        HOUR,
        error_ratio=0.2,
        expect=("HighErrorRate", "AvailabilityBudgetBurnFast", FAULT_INJECTION),
        until="fired",
        day=10,
    ),
)
# Half the predictions get a verdict, so that 50 are reviewed within a few minutes.
REVIEWED = Traffic(feedback_share=0.5)
ACCURACY = (
    Phase(
        "worse model",
        2 * HOUR,
        traffic=REVIEWED,
        promote_worse_model=True,
        expect=("ModelAccuracyDrop",),
        until="fired",
        day=7,
    ),
    # The alert goes to LeafWatch's webhook, which rolls back when LEAFWATCH_AUTO_ROLLBACK is on;
    # if nothing has by the end of this phase, the simulator does, so what follows is sane.
    Phase("rollback", 15 * MINUTE, traffic=REVIEWED, restore_model=True, until="rollback", day=7),
    Phase("after rollback", 10 * MINUTE, traffic=REVIEWED, day=7),
)
# Drift runs on LeafWatch's schedule (LEAFWATCH_DRIFT_INTERVAL_SECONDS, hourly as shipped) and
# DataDriftDetected needs three drifted runs in a row: hours in production.
DRIFT = (
    Phase(
        "new camera",
        5 * HOUR,
        traffic=Traffic(camera="new-camera"),
        expect=("DataDriftDetected",),
        until="fired",
        day=14,
    ),
)
LABEL_SHIFT = (
    Phase(
        "late-stage season",
        5 * HOUR,
        traffic=Traffic(class_weights=LATE_STAGES),
        expect=("DataDriftDetected",),
        until="fired",
        day=17,
    ),
)
OUTAGE = (Phase("outage", 15 * MINUTE, outage=True, expect=("APIDown",), until="fired", day=21),)

SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario(
            "baseline",
            "Healthy traffic and feedback; no alert should fire.",
            (Phase("steady", 30 * MINUTE),),
        ),
        Scenario(
            "latency",
            "Predictions slow down by 20%, then by 300%, through the fault switch.",
            (_warm_up(), *LATENCY, _recovery(30 * MINUTE)),
        ),
        Scenario(
            "errors",
            "5%, then 20% of predictions fail with a server error, through the fault switch.",
            (_warm_up(), *ERRORS, _recovery(30 * MINUTE)),
        ),
        Scenario(
            "accuracy",
            "A worse model version is promoted; feedback reports the truth; it is rolled back.",
            (_warm_up(traffic=REVIEWED), *ACCURACY),
        ),
        Scenario(
            "drift",
            "A new camera: darker, softer, larger photos.",
            (_warm_up(), *DRIFT, _recovery(5 * HOUR)),
        ),
        Scenario(
            "label-shift",
            "Many more late-stage leaves than the model was trained on.",
            (_warm_up(), *LABEL_SHIFT, _recovery(5 * HOUR)),
        ),
        Scenario(
            "outage",
            "LeafWatch stops answering (its process is paused), then comes back.",
            (_warm_up(), *OUTAGE, _recovery(30 * MINUTE)),
        ),
        Scenario(
            "story",
            "The seed's 30 days: slow answers, a worse model, errors, drift, a crash.",
            (
                Phase("deployed", 30 * MINUTE, day=1),
                *LATENCY,
                _recovery(30 * MINUTE),
                *ACCURACY,
                *ERRORS,
                _recovery(30 * MINUTE),
                *DRIFT,
                _recovery(5 * HOUR),
                *LABEL_SHIFT,
                _recovery(5 * HOUR),
                *OUTAGE,
                _recovery(30 * MINUTE),
            ),
        ),
    )
}


def get_scenario(name: str) -> Scenario:
    """The scenario of that name; ValueError listing the known ones."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; one of {', '.join(SCENARIOS)}") from None


def scaled_seconds(phase: Phase, speed: float) -> float:
    """How long the phase lasts at most, in real seconds, at `speed` times production time."""
    if speed <= 0:
        raise ValueError(f"speed must be positive, got {speed}")
    return phase.seconds / speed


def added_latency_ms(phase: Phase, reference_ms: float) -> int:
    """Milliseconds the fault switch adds to each prediction in this phase."""
    return round(phase.latency * reference_ms)


def worse_permutation() -> list[int]:
    """For each output class of the worse model, the class of the good model it reports."""
    order = list(range(NUM_CLASSES))
    for first, second in WORSE_MODEL_SWAPS:
        order[first], order[second] = order[second], order[first]
    return order
