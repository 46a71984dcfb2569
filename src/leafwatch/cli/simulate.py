"""`leafwatch simulate` and `leafwatch demo`: the seed's scenarios, run against a real LeafWatch."""

import asyncio
import contextlib
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

from leafwatch.config import Settings
from leafwatch.simulate.scenarios import SCENARIOS, Scenario, get_scenario
from leafwatch.simulate.timeline import parse_rate

if TYPE_CHECKING:
    from leafwatch.simulate.runner import SimulationOptions, SimulationResult
    from leafwatch.simulate.traffic import LeafPool

console = Console()
SEED = 2026
NAMES = ", ".join(SCENARIOS)


def simulate(
    scenario: Annotated[str, typer.Option(help=f"One of: {NAMES}.")],
    url: Annotated[str, typer.Option(help="The running LeafWatch.")] = "http://127.0.0.1:8000",
    rate: Annotated[str, typer.Option(help="Predictions sent: 5/s, 120/m or 5.")] = "5/s",
    speed: Annotated[
        float,
        typer.Option(
            min=1,
            help="Divide the scenario's production-time phases by this; use the rules' time scale"
            " (`leafwatch stack up --time-scale`).",
        ),
    ] = 1,
    duration: Annotated[
        float | None,
        typer.Option(
            min=1, help="Longest run in seconds; sets --speed from the scenario's length."
        ),
    ] = None,
    prometheus_url: Annotated[
        str | None, typer.Option(help="Read alerts from this Prometheus.")
    ] = None,
    alertmanager_url: Annotated[
        str | None, typer.Option(help="Read notified alerts from this Alertmanager.")
    ] = None,
    admin_token_file: Annotated[
        Path | None,
        typer.Option(help="LeafWatch's admin token (faults, model reload, alert events)."),
    ] = None,
    api_key_file: Annotated[
        Path | None, typer.Option(help="An API key for predict and feedback, if required.")
    ] = None,
    metrics_token_file: Annotated[
        Path | None, typer.Option(help="Bearer token of LeafWatch's /metrics, if required.")
    ] = None,
    model_dir: Annotated[
        Path | None,
        typer.Option(help="The local model registry LeafWatch serves from [LEAFWATCH_MODEL_DIR]."),
    ] = None,
    pid: Annotated[
        list[int] | None,
        typer.Option(help="LeafWatch's process id, for the outage (repeat for several)."),
    ] = None,
    reference_latency_ms: Annotated[
        float, typer.Option(min=1, help="The latency the +20% and +300% slowdowns are shares of.")
    ] = 500,
    pool_size: Annotated[
        int, typer.Option(min=1, help="Leaf photos rendered per class and camera, then reused.")
    ] = 48,
    seed: Annotated[int, typer.Option(help="Seed of the photos and the traffic.")] = SEED,
    report: Annotated[
        Path | None, typer.Option(help="Write the outcome as JSON to this file.")
    ] = None,
    check: Annotated[
        bool, typer.Option(help="Exit 1 when an expected alert did not fire.")
    ] = False,
) -> None:
    """Drive a running LeafWatch through a scenario and report which alerts fired, and when."""
    # Rendering, HTTP and ONNX libraries load only when a simulation runs, not for every command.
    from leafwatch.simulate.runner import SimulationOptions

    chosen = _scenario(scenario)
    settings = Settings()
    options = SimulationOptions(
        url=url.rstrip("/"),
        rate=_rate(rate),
        speed=_speed(chosen, speed, duration),
        reference_latency_ms=reference_latency_ms,
        prometheus_url=prometheus_url,
        alertmanager_url=alertmanager_url,
        admin_token=_read(admin_token_file),
        api_key=_read(api_key_file),
        metrics_token=_read(metrics_token_file),
        model_dir=model_dir or settings.resolved_model_dir(),
        model_name=settings.model_name,
        pids=tuple(pid or ()),
        pool_per_class=pool_size,
        seed=seed,
    )
    _check(chosen, options)
    pool = render_pool(chosen, pool_per_class=pool_size, seed=seed, quiet=False)
    result = run_scenario(chosen, options, pool=pool)
    _finish(result, report=report, check=check)


def demo(
    scenario: Annotated[str, typer.Option(help=f"One of: {NAMES}.")] = "story",
    speed: Annotated[
        float, typer.Option(min=1, help="Time scale of the rules and of the scenario.")
    ] = 30,
    rate: Annotated[str, typer.Option(help="Predictions sent: 5/s, 120/m or 5.")] = "5/s",
    deploy_dir: Annotated[
        Path, typer.Option(help="LeafWatch's deploy/ directory (prometheus/, alertmanager/).")
    ] = Path("deploy"),
    workdir: Annotated[
        Path | None,
        typer.Option(help="Data, logs, the admin token and the report; default a new temp dir."),
    ] = None,
    pool_size: Annotated[int, typer.Option(min=1, help="Leaf photos per class and camera.")] = 48,
) -> None:
    """Start LeafWatch, Prometheus and Alertmanager here and run a scenario (the story) on them."""
    from leafwatch.simulate.demo import demo_services
    from leafwatch.simulate.runner import SimulationOptions
    from leafwatch.stack import StackError

    chosen = _scenario(scenario)
    per_second = _rate(rate)
    _check_onnx(chosen)
    if not deploy_dir.is_dir():
        _fail(f"no deploy directory at {deploy_dir.resolve()}: run from the checkout or pass one")
    folder = workdir or Path(tempfile.mkdtemp(prefix="leafwatch-demo-"))
    console.print(f"demo directory (data, logs, admin token, report): {folder.resolve()}")
    pool = render_pool(chosen, pool_per_class=pool_size, seed=SEED, quiet=False)
    with contextlib.ExitStack() as services_up:
        try:
            with console.status("starting LeafWatch, Alertmanager and Prometheus"):
                services = services_up.enter_context(
                    demo_services(folder, deploy_dir=deploy_dir, speed=speed)
                )
        except (StackError, RuntimeError) as exc:
            _fail(str(exc))
        console.print(
            f"LeafWatch {services.url} (dashboard {services.url}/dashboard), "
            f"Prometheus {services.prometheus_url}, Alertmanager {services.alertmanager_url}"
        )
        options = SimulationOptions(
            url=services.url,
            rate=per_second,
            speed=speed,
            prometheus_url=services.prometheus_url,
            alertmanager_url=services.alertmanager_url,
            admin_token=services.admin_token_file.read_text().strip(),
            model_dir=services.model_dir,
            pids=(services.pid,),
            pool_per_class=pool_size,
        )
        result = run_scenario(chosen, options, pool=pool)
        console.print()
        console.print("stopping Prometheus, Alertmanager and LeafWatch")
    _finish(result, report=folder / "report.json", check=False)


def run_scenario(
    scenario: Scenario, options: "SimulationOptions", *, pool: "LeafPool", quiet: bool = False
) -> "SimulationResult":
    """Run the scenario with a live view, and return what it found."""
    from leafwatch.simulate.control import ControlError
    from leafwatch.simulate.runner import Simulation, SimulationError
    from leafwatch.simulate.worse_model import WorseModelUnavailable

    try:
        simulation = Simulation(scenario, options, pool=pool, console=None if quiet else console)
        return asyncio.run(simulation.run())
    except (SimulationError, ControlError, WorseModelUnavailable) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        # asyncio.run cancelled the run, whose clean-up ran before this was raised.
        console.print()
        _fail("interrupted; faults, a paused process and a worse model were undone")


def render_pool(scenario: Scenario, *, pool_per_class: int, seed: int, quiet: bool) -> "LeafPool":
    """Each camera's photos, rendered once with a progress bar."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from leafwatch.model.labels import NUM_CLASSES
    from leafwatch.simulate.traffic import LeafPool

    cameras = scenario.cameras
    total = len(cameras) * NUM_CLASSES * pool_per_class
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
    ) as bar:
        task = bar.add_task(f"rendering leaves ({', '.join(cameras)})", total=total)
        return LeafPool.render(
            cameras,
            per_class=pool_per_class,
            seed=seed,
            advance=lambda: bar.advance(task),
        )


def _finish(result: "SimulationResult", *, report: Path | None, check: bool) -> None:
    """Print the tables and notes, write the JSON report, and fail on a missed alert if asked."""
    from leafwatch.simulate.report import as_json, detection_table, markdown, phase_table
    from leafwatch.simulate.timeline import missed

    console.print(phase_table(result))
    console.print(detection_table(result))
    for note in result.notes:
        console.print(f"[dim]{note.at:7.1f} s[/dim]  {note.text}")
    served = ", ".join(f"{version} from {at:.0f} s" for at, version in result.versions)
    console.print(f"model versions LeafWatch served: {served or 'unknown'}")
    for event in result.alert_events:
        if event.get("action") == "rolled_back":
            console.print(
                f"LeafWatch's webhook rolled back from version {event['from_version']} to "
                f"{event['to_version']} on {event['alertname']} at {event['received_at']}"
            )
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(as_json(result), indent=2) + "\n")
        report.with_suffix(".md").write_text(markdown(result))
        console.print(f"report written to {report} (and its table to {report.with_suffix('.md')})")
    gone = missed(result.detections)
    if gone:
        names = ", ".join(f"{row.alert} in {row.phase.name}" for row in gone)
        console.print(f"[yellow]expected but not seen firing: {names}[/yellow]")
        if check:
            raise typer.Exit(1)


def _check(scenario: Scenario, options: "SimulationOptions") -> None:
    """Fail now, before rendering, if the scenario cannot run with these options."""
    from leafwatch.simulate.runner import SimulationError, plan

    try:
        plan(scenario, options)
    except SimulationError as exc:
        _fail(str(exc))
    _check_onnx(scenario)


def _check_onnx(scenario: Scenario) -> None:
    """The accuracy phases edit an ONNX graph: fail now if the onnx package is missing."""
    from leafwatch.simulate.worse_model import WorseModelUnavailable, require_onnx

    if scenario.needs_model_registry:
        try:
            require_onnx()
        except WorseModelUnavailable as exc:
            _fail(str(exc))


def _scenario(name: str) -> Scenario:
    try:
        return get_scenario(name)
    except ValueError as exc:
        _fail(str(exc))


def _rate(text: str) -> float:
    try:
        return parse_rate(text)
    except ValueError as exc:
        _fail(f"--rate: {exc}")


def _speed(scenario: Scenario, speed: float, duration: float | None) -> float:
    """--speed, or the speed at which the scenario's longest run lasts --duration seconds."""
    if duration is None:
        return speed
    return max(1.0, sum(phase.seconds for phase in scenario.phases) / duration)


def _read(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}")


def _fail(message: str) -> NoReturn:
    console.print(f"[red]{message}[/red]")
    raise typer.Exit(1)
