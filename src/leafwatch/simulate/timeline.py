"""What happened when: phases, alert episodes, and which alert fired how long after its phase began.

Pure functions over timestamps (seconds since the simulation started), so the arithmetic of
detection delays is tested without any server.
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour))?\s*$")
_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
_PER |= {"h": 3600.0, "hour": 3600.0}


def parse_rate(text: str) -> float:
    """Requests a second from `5/s`, `120/m`, `600/h` or a bare number (per second)."""
    match = _RATE.match(text)
    if match is None:
        raise ValueError(f"not a rate: {text!r}; write e.g. 5/s, 120/m or 5")
    rate = float(match[1]) / _PER[match[2] or "s"]
    if rate <= 0:
        raise ValueError(f"the rate must be positive, got {text!r}")
    return rate


@dataclass(frozen=True)
class PhaseSpan:
    """One phase as it ran."""

    index: int
    name: str
    started: float
    ended: float
    expect: tuple[str, ...] = ()
    day: int | None = None


@dataclass(frozen=True)
class Episode:
    """An alert firing without interruption, from `started` to `ended` (None: still firing)."""

    alert: str
    started: float
    ended: float | None


@dataclass(frozen=True)
class Detection:
    """An alert in one phase: how long after the phase began each source saw it fire."""

    alert: str
    phase: PhaseSpan
    expected: bool
    # Seconds after the phase began, per source; None: that source did not see it in the phase.
    # 0 with `already_firing`: it fired before the phase began and still did.
    delays: dict[str, float | None] = field(default_factory=dict)
    already_firing: bool = False

    @property
    def fired(self) -> bool:
        """Whether any source saw it fire in the phase."""
        return any(delay is not None for delay in self.delays.values())


def episodes(samples: Sequence[tuple[float, frozenset[str]]]) -> list[Episode]:
    """Episodes of each alert from polled states: (time, names firing then), in time order.

    An alert seen firing at one poll and not at the next ended at the later poll.
    """
    open_since: dict[str, float] = {}
    found: list[Episode] = []
    for moment, firing in samples:
        for alert in sorted(set(open_since) - firing):
            found.append(Episode(alert, open_since.pop(alert), moment))
        for alert in sorted(firing - set(open_since)):
            open_since[alert] = moment
    found.extend(Episode(alert, start, None) for alert, start in open_since.items())
    return sorted(found, key=lambda episode: (episode.started, episode.alert))


def firing_at(found: Iterable[Episode], moment: float) -> set[str]:
    """Alerts firing at `moment`."""
    return {
        episode.alert
        for episode in found
        if episode.started <= moment and (episode.ended is None or episode.ended > moment)
    }


def detections(
    phases: Sequence[PhaseSpan], by_source: Mapping[str, Sequence[Episode]]
) -> list[Detection]:
    """Per phase: every alert expected in it, and every alert that began firing in it.

    An alert's delay is from the phase's start to the first poll that saw it firing; an alert
    still firing from an earlier phase counts only where it is expected (as already firing).
    """
    rows: list[Detection] = []
    for phase in phases:
        alerts: dict[str, Detection] = {
            alert: Detection(alert, phase, expected=True) for alert in phase.expect
        }
        for source, found in by_source.items():
            carried = firing_at(found, phase.started)
            first: dict[str, float] = {}
            for episode in found:
                if phase.started <= episode.started < phase.ended:
                    first.setdefault(episode.alert, episode.started - phase.started)
            for alert in phase.expect:
                if alert in carried:
                    alerts[alert].delays[source] = 0.0
                    alerts[alert] = _already(alerts[alert])
            for alert, delay in first.items():
                if alert in carried:
                    continue
                row = alerts.setdefault(alert, Detection(alert, phase, expected=False))
                row.delays.setdefault(source, delay)
        for row in alerts.values():
            for source in by_source:
                row.delays.setdefault(source, None)
        rows.extend(sorted(alerts.values(), key=_order))
    return rows


def _already(row: Detection) -> Detection:
    return Detection(row.alert, row.phase, row.expected, row.delays, already_firing=True)


def _order(row: Detection) -> tuple[bool, float, str]:
    seen = [delay for delay in row.delays.values() if delay is not None]
    return (not row.expected, min(seen) if seen else float("inf"), row.alert)


def missed(rows: Iterable[Detection]) -> list[Detection]:
    """Expected alerts that no source saw fire in their phase."""
    return [row for row in rows if row.expected and not row.fired]


def unexpected(rows: Iterable[Detection]) -> list[Detection]:
    """Alerts that fired in a phase that did not expect them."""
    return [row for row in rows if not row.expected and row.fired]
