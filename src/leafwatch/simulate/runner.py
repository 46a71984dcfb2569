"""Runs a scenario against a running LeafWatch: phase by phase, with traffic, faults and a watch."""

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from leafwatch.config import DEFAULT_MODEL_NAME
from leafwatch.model.registry import LocalModelRegistry
from leafwatch.simulate.control import Admin, ControlError, ModelSwitch, Outage
from leafwatch.simulate.observe import (
    AlertmanagerAlerts,
    AlertSource,
    LeafWatchAlerts,
    Observer,
    PrometheusAlerts,
)
from leafwatch.simulate.scenarios import (
    LINGERING,
    Phase,
    Scenario,
    added_latency_ms,
    scaled_seconds,
)
from leafwatch.simulate.timeline import Detection, PhaseSpan, detections
from leafwatch.simulate.traffic import Driver, LeafPool, PhaseTally, TrafficStats

# Prometheus's evaluation at 5 minutes as shipped; LeafWatch's own conditions use the same window.
RULE_WINDOW_S = 300.0
MAX_IN_FLIGHT = 64
# Before the first phase: quiet polls wanted, and the longest wait for them.
SETTLE_POLLS = 3
SETTLE_S = 60.0
CHECK_S = 0.5  # how often a phase's end condition is evaluated


class SimulationError(Exception):
    """The scenario cannot run as asked; the message says what is missing."""


@dataclass(frozen=True)
class SimulationOptions:
    """Where LeafWatch and its monitoring are, and how hard and fast to drive them."""

    url: str
    rate: float = 5.0  # predictions a second
    speed: float = 1.0  # production time divided by this; match the rules' time scale
    # The latency scenario's slowdowns are shares of this (see docs/simulator.md).
    reference_latency_ms: float = 500.0
    prometheus_url: str | None = None
    alertmanager_url: str | None = None
    admin_token: str | None = None
    api_key: str | None = None
    metrics_token: str | None = None
    model_dir: Path | None = None  # the served local registry, for the accuracy scenario
    model_name: str = DEFAULT_MODEL_NAME
    pids: tuple[int, ...] = ()  # LeafWatch's processes, for the outage scenario
    pool_per_class: int = 48
    seed: int = 2026
    poll_seconds: float = 1.0
    request_timeout: float = 10.0


@dataclass
class Note:
    """Something the simulator did or saw, at a time since the start."""

    at: float
    text: str


@dataclass
class SimulationResult:
    """What ran, what the traffic saw, and which alerts fired when."""

    scenario: Scenario
    options: SimulationOptions
    started_at: datetime
    spans: list[PhaseSpan]
    tallies: dict[int, PhaseTally]
    detections: list[Detection]
    sources: list[str]
    notes: list[Note]
    versions: list[tuple[float, str]]  # (since start, version LeafWatch served from then)
    alert_events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def duration(self) -> float:
        """Seconds from the first phase's start to the last one's end."""
        return self.spans[-1].ended if self.spans else 0.0


def plan(scenario: Scenario, options: SimulationOptions) -> tuple[list[Phase], list[str]]:
    """The phases that can run with these options, and why any are left out.

    Missing what a single-fault scenario needs is an error; the story leaves an outage out.
    """
    if scenario.needs_admin and not options.admin_token:
        raise SimulationError(
            f"scenario {scenario.name} changes LeafWatch through its admin endpoints: pass "
            "--admin-token-file (the file of LEAFWATCH_ADMIN_TOKEN_FILE)"
        )
    if scenario.needs_model_registry and options.model_dir is None:
        raise SimulationError(
            f"scenario {scenario.name} registers a worse model in the served local registry: "
            "pass --model-dir (LeafWatch's LEAFWATCH_MODEL_DIR, default var/models)"
        )
    if not scenario.needs_outage or options.pids:
        return list(scenario.phases), []
    if all(phase.outage for phase in scenario.phases if phase.expect):
        raise SimulationError(
            "the outage scenario pauses LeafWatch's process and needs its id: pass --pid "
            "(`leafwatch demo` does, as it starts LeafWatch itself)"
        )
    kept = [phase for phase in scenario.phases if not phase.outage]
    return kept, ["outage left out: without --pid the simulator cannot stop LeafWatch"]


def alert_sources(options: SimulationOptions) -> list[AlertSource]:
    """Prometheus and Alertmanager when given, and always LeafWatch's own figures."""
    sources: list[AlertSource] = []
    if options.prometheus_url:
        sources.append(PrometheusAlerts(options.prometheus_url))
    if options.alertmanager_url:
        sources.append(AlertmanagerAlerts(options.alertmanager_url))
    window = max(RULE_WINDOW_S / options.speed, 10.0)
    sources.append(LeafWatchAlerts(options.url, window_s=window, token=options.metrics_token))
    return sources


class Simulation:
    """One run of a scenario."""

    def __init__(
        self,
        scenario: Scenario,
        options: SimulationOptions,
        *,
        pool: LeafPool,
        console: Console | None = None,
    ) -> None:
        self.scenario = scenario
        self.options = options
        self.pool = pool
        self.console = console
        self.phases, skipped = plan(scenario, options)
        self.notes = [Note(0.0, text) for text in skipped]
        self.stats = TrafficStats()
        self.spans: list[PhaseSpan] = []
        self.observer = Observer(alert_sources(options), leafwatch_url=options.url)
        self.versions: list[tuple[float, str]] = []
        self.current: tuple[int, Phase, float] | None = None
        self.began: float | None = None  # when the first phase began
        self.fault_set = False
        self.outage = Outage(list(options.pids))
        self.models = (
            ModelSwitch(LocalModelRegistry(options.model_dir, options.model_name))
            if options.model_dir is not None
            else None
        )

    async def run(self) -> SimulationResult:
        """Run every phase, then undo what is still changed, and return the figures."""
        options = self.options
        started_at = datetime.now(UTC)
        headers = {"X-API-Key": options.api_key} if options.api_key else {}
        limits = httpx.Limits(max_connections=MAX_IN_FLIGHT + 8)
        async with (
            httpx.AsyncClient(
                base_url=options.url,
                headers=headers,
                timeout=options.request_timeout,
                limits=limits,
            ) as traffic,
            httpx.AsyncClient(base_url=options.url, timeout=10) as control,
        ):
            admin = Admin(control, options.admin_token) if options.admin_token else None
            driver = Driver(traffic, self.pool, self.stats, max_in_flight=MAX_IN_FLIGHT)
            await self.observer.poll(control)
            self._note_version()
            tasks = [
                asyncio.create_task(self.observer.watch(control, interval=options.poll_seconds))
            ]
            live = self._live()
            if live is not None:
                tasks.append(asyncio.create_task(self._refresh(live)))
            try:
                with live or contextlib.nullcontext():
                    await self._settle(timeout=SETTLE_S)
                    for index, phase in enumerate(self.phases):
                        await self._phase(index, phase, driver, admin)
                    if live is not None:
                        live.update(self._status())
            finally:
                await self._clean_up(admin)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await driver.drain(timeout=options.request_timeout)
            events = await self._alert_events(control)
        return SimulationResult(
            scenario=self.scenario,
            options=options,
            started_at=started_at,
            spans=self.spans,
            tallies=self.stats.phases,
            detections=detections(self.spans, self.observer.episodes()),
            sources=[source.name for source in self.observer.sources],
            notes=self.notes,
            versions=self.versions,
            alert_events=events,
        )

    async def _settle(self, *, timeout: float) -> None:
        """Wait, up to `timeout` s, until no alert fires or is pending for a few polls in a row.

        A stack just started has alerts of its own start (APIDown until the first scrape); they
        would be counted against the first phase.
        """
        observer = self.observer
        samples = observer.samples[observer.primary.name]
        deadline = observer.now() + timeout
        seen, quiet = len(samples), 0
        while quiet < SETTLE_POLLS:
            if observer.now() > deadline:
                busy = ", ".join(sorted(observer.firing()))
                self._note(f"alerts firing before the first phase: {busy}")
                return
            await asyncio.sleep(self.options.poll_seconds / 2)
            if len(samples) == seen:
                continue
            seen = len(samples)
            quiet = 0 if observer.firing() or observer.primary.pending else quiet + 1

    async def _phase(self, index: int, phase: Phase, driver: Driver, admin: Admin | None) -> None:
        await self._enter(phase, admin)
        started = self.observer.now()
        if self.began is None:
            self.began = started
        self.current = (index, phase, started)
        limit = scaled_seconds(phase, self.options.speed)
        reached = self._until(phase, started)
        checked = [started, False]  # when the end condition was last evaluated, and its answer

        def done() -> bool:
            now = self.observer.now()
            if now - checked[0] >= CHECK_S:
                self._note_version()
                checked[:] = [now, reached()]
            return now - started >= limit or bool(checked[1])

        await driver.run(phase.traffic, rate=self.options.rate, phase=index, done=done)
        ended = self.observer.now()
        await self._exit(phase, admin)
        self.spans.append(PhaseSpan(index, phase.name, started, ended, phase.expect, phase.day))

    def _until(self, phase: Phase, started: float) -> Callable[[], bool]:
        """Whether the phase's own end condition is met (its time limit aside)."""
        observer = self.observer
        if phase.until == "fired":
            wanted = observer.can_report(phase.expect)
            if not wanted:
                return lambda: False
            return lambda: wanted <= observer.fired_since(started)
        if phase.until == "resolved":
            began = self.began if self.began is not None else started

            def resolved() -> bool:
                samples = observer.samples[observer.primary.name]
                if not samples or samples[-1][0] <= started:
                    return False  # no poll since the phase began: nothing known yet
                # Alerts the scenario caused, except the slow burns: their days-long windows
                # outlast any run (they resolve in hours, even at 30 times the speed).
                caused = observer.fired_since(began) - set(LINGERING)
                return not (caused & (observer.firing() | observer.pending()))

            return resolved
        if phase.until == "rollback":
            worse = set(self.models.worse_versions) if self.models else set()
            return lambda: observer.served_version not in worse
        return lambda: False

    async def _enter(self, phase: Phase, admin: Admin | None) -> None:
        if phase.uses_fault_switch:
            assert admin is not None, "plan() checks the admin token"
            latency = added_latency_ms(phase, self.options.reference_latency_ms)
            await admin.set_fault(latency_ms=latency, error_ratio=phase.error_ratio)
            self.fault_set = True
            self._note(f"fault on {phase.name}: +{latency} ms, {phase.error_ratio:.0%} errors")
        if phase.promote_worse_model:
            assert admin is not None, "plan() checks the admin token"
            assert self.models is not None, "plan() checks the model directory"
            good, worse = await asyncio.to_thread(self.models.promote_worse)
            served = await admin.reload_model()
            self._note(f"worse model registered as version {worse} and promoted over {good}")
            if served != worse:
                raise ControlError(
                    f"LeafWatch serves version {served} after the reload, not {worse}: is "
                    "--model-dir the registry it serves from?"
                )
            self.observer.served_version = served
        if phase.outage:
            self.outage.pause()
            self._note(f"LeafWatch paused (SIGSTOP to {', '.join(map(str, self.outage.pids))})")

    async def _exit(self, phase: Phase, admin: Admin | None) -> None:
        if phase.uses_fault_switch and admin is not None:
            await admin.clear_faults()
            self.fault_set = False
            self._note("faults cleared")
        if phase.outage:
            self.outage.resume()
            self._note("LeafWatch resumed (SIGCONT)")
        if phase.restore_model:
            await self._restore(admin, why="LeafWatch had not rolled it back by the phase's end")

    async def _restore(self, admin: Admin | None, *, why: str) -> None:
        if self.models is None or admin is None:
            return
        restored = await asyncio.to_thread(self.models.restore)
        if restored is None:
            return
        await admin.reload_model()
        self._note(f"the simulator rolled back from version {restored[0]} to {restored[1]}: {why}")

    async def _clean_up(self, admin: Admin | None) -> None:
        """Leave LeafWatch as found: no fault, running, not serving the worse model."""
        self.outage.resume()
        try:
            if self.fault_set and admin is not None:
                await admin.clear_faults()
                self._note("faults cleared at the end")
            await self._restore(admin, why="the run ended with it in production")
        except ControlError as exc:
            self._note(f"clean-up incomplete: {exc}")

    async def _alert_events(self, client: httpx.AsyncClient) -> list[dict[str, Any]]:
        """LeafWatch's record of the alerts its webhook received (needs the admin token)."""
        if not self.options.admin_token:
            return []
        headers = {"Authorization": f"Bearer {self.options.admin_token}"}
        try:
            answer = await client.get("/api/v1/alerts", headers=headers, params={"limit": 500})
        except httpx.HTTPError:
            return []
        if answer.status_code != 200:
            return []
        items: list[dict[str, Any]] = answer.json()["items"]
        return items

    def _note(self, text: str) -> None:
        self.notes.append(Note(self.observer.now(), text))

    def _note_version(self) -> None:
        version = self.observer.served_version
        if version is not None and (not self.versions or self.versions[-1][1] != version):
            self.versions.append((self.observer.now(), version))

    def _live(self) -> Live | None:
        if self.console is None:
            return None
        return Live(self._status(), console=self.console, refresh_per_second=2)

    async def _refresh(self, live: Live) -> None:
        while True:
            live.update(self._status())
            await asyncio.sleep(0.5)

    def _status(self) -> Group:
        """The live view: the phase, the traffic, the model, the alerts firing."""
        lines: list[Text | Table] = []
        if self.current is None:
            lines.append(Text(f"{self.scenario.name}: starting"))
        else:
            index, phase, started = self.current
            elapsed = self.observer.now() - started
            limit = scaled_seconds(phase, self.options.speed)
            day = f" (day {phase.day})" if phase.day else ""
            lines.append(
                Text.assemble(
                    (f"{self.scenario.name} ", "bold"),
                    f"phase {index + 1}/{len(self.phases)} ",
                    (phase.name, "bold cyan"),
                    f"{day}: {elapsed:.0f} s of at most {limit:.0f} s",
                    f", until {_UNTIL[phase.until]}" if phase.until != "time" else "",
                )
            )
        total = self.stats.total()
        recent = self.stats.recent_quantiles()
        latency = f"p50 {recent[0] * 1000:.0f} ms, p95 {recent[1] * 1000:.0f} ms" if recent else "-"
        table = Table.grid(padding=(0, 2))
        table.add_row(
            "traffic",
            f"sent {total.sent}  answered {total.answered}  5xx {total.server_errors}  "
            f"4xx {total.client_errors}  no answer {total.failures}  skipped {total.skipped}  "
            f"verdicts {total.feedback_sent}",
        )
        table.add_row("latency (last 30 s)", latency)
        phase_accuracy = "-"
        if self.current is not None:
            value = self.stats.tally(self.current[0]).accuracy()
            phase_accuracy = f"{value:.0%}" if value is not None else "-"
        table.add_row(
            "model",
            f"version {self.observer.served_version or '?'}; right on {phase_accuracy} of this "
            "phase's predictions",
        )
        for source in self.observer.sources:
            firing = sorted(self.observer.current.get(source.name, frozenset()))
            table.add_row(f"firing ({source.name})", ", ".join(firing) or "none")
        lines.append(table)
        return Group(*lines)


_UNTIL = {
    "fired": "its expected alerts fire",
    "resolved": "the alerts it caused resolve",
    "rollback": "the worse model is rolled back",
    "time": "",
}
