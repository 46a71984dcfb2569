"""`leafwatch`: serve the API, manage the database and the models, make data."""

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from leafwatch.cli import data
from leafwatch.cli.drift import drift
from leafwatch.cli.images import images_app
from leafwatch.cli.keys import keys_app
from leafwatch.cli.report import report
from leafwatch.cli.simulate import demo, simulate
from leafwatch.cli.stack import stack_app
from leafwatch.config import Settings
from leafwatch.errors import ModelRegistryError

if TYPE_CHECKING:
    from leafwatch.model.registry import ModelRegistry, ModelVersionInfo

app = typer.Typer(
    help="LeafWatch: Black Sigatoka prediction API with monitoring built in.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
model_app = typer.Typer(help="Model versions in the registry.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(model_app, name="model")
app.add_typer(stack_app, name="stack")
app.add_typer(keys_app, name="keys")
app.add_typer(images_app, name="images")
console = Console()
app.command()(data.generate)
app.command()(data.train)
app.command()(drift)
app.command()(report)
app.command()(simulate)
app.command()(demo)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind [LEAFWATCH_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [LEAFWATCH_PORT].")] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Server processes [LEAFWATCH_WORKERS].")
    ] = None,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
) -> None:
    """Serve the API with uvicorn (settings from LEAFWATCH_* variables)."""
    import uvicorn

    from leafwatch.observe.exposition import MULTIPROC_ENV, reset_multiprocess_dir

    settings = Settings()
    workers = workers or settings.workers
    if workers > 1:
        # prometheus_client's multiprocess mode: each worker writes its metrics to files in this
        # directory and /metrics adds them up. The variable must be set before workers start.
        directory = Path(os.environ.get(MULTIPROC_ENV) or settings.resolved_metrics_dir())
        reset_multiprocess_dir(directory)
        os.environ[MULTIPROC_ENV] = str(directory.resolve())
    # Each worker builds its own app from the environment, so the factory takes no arguments;
    # the worker count travels the same way (the log file is shared differently by several), and
    # so do the address and port given here, which the metrics port's defaults and checks use.
    os.environ["LEAFWATCH_WORKERS"] = str(workers)
    if host is not None:
        os.environ["LEAFWATCH_HOST"] = host
    if port is not None:
        os.environ["LEAFWATCH_PORT"] = str(port)
    uvicorn.run(
        "leafwatch.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        reload=reload,
        # LeafWatch configures logging itself and writes the access line inside the request.
        log_config=None,
        access_log=False,
    )


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply the database migrations (LEAFWATCH_DATABASE_URL)."""
    from leafwatch.storage import db

    settings = Settings()
    engine = db.make_engine(settings.resolved_database_url())
    try:
        db.upgrade(engine, revision)
        console.print(f"database at revision [bold]{db.current_revision(engine)}[/bold]")
    finally:
        engine.dispose()


@db_app.command("current")
def db_current() -> None:
    """Print the schema revision of the database."""
    from leafwatch.storage import db

    engine = db.make_engine(Settings().resolved_database_url())
    try:
        console.print(db.current_revision(engine) or "empty (no migrations applied)")
    finally:
        engine.dispose()


def _registry() -> "ModelRegistry":
    from leafwatch.model.registry import open_registry

    try:
        registry = open_registry(Settings())
        registry.ensure_seeded()
    except ModelRegistryError as exc:
        console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from None
    return registry


@model_app.command("list")
def model_list() -> None:
    """List registered versions, their held-out metrics, and which one is in production."""
    registry = _registry()
    try:
        production: str | None = registry.production().version
    except ModelRegistryError:
        production = None  # listed all the same; none is marked as serving
    table = Table(title=f"model {registry.name}")
    for column in ("version", "production", "accuracy", "ECE", "registered", "data seed"):
        table.add_column(column)
    for info in registry.versions():
        metrics = info.card.get("metrics", {})
        table.add_row(
            info.version,
            "yes" if info.version == production else "",
            _fmt(metrics.get("heldout_accuracy")),
            _fmt(metrics.get("ece")),
            str(info.card.get("registered_at", ""))[:19],
            str(info.card.get("data", {}).get("seed", "")),
        )
    console.print(table)


@model_app.command("promote")
def model_promote(version: Annotated[str, typer.Argument(help="Version to serve.")]) -> None:
    """Make VERSION the production version (services pick it up within the poll interval)."""
    registry = _registry()
    try:
        registry.promote(version)
    except ModelRegistryError as exc:
        console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from None
    console.print(f"{registry.name}: production is now version [bold]{version}[/bold]")


@model_app.command("rollback")
def model_rollback(
    expect: Annotated[
        str | None,
        typer.Option(help="Roll back only while this version is production (as the webhook does)."),
    ] = None,
) -> None:
    """Point production back at the version promoted before the current one."""
    from sqlalchemy.exc import SQLAlchemyError

    from leafwatch.cli.database import database_session
    from leafwatch.service.responses import Rollback, record_manual_rollback, roll_back

    registry = _registry()
    try:
        outcome = roll_back(registry, expected=expect)
    except ModelRegistryError as exc:  # no production version at all
        outcome = Rollback("skipped", exc.detail)
    if outcome.action != "rolled_back":
        console.print(f"[red]{outcome.detail}[/red]")
        raise typer.Exit(1)
    console.print(
        f"{registry.name}: rolled back from version {outcome.from_version} to "
        f"[bold]{outcome.to_version}[/bold]"
    )
    try:
        with database_session(Settings()) as session:
            record_manual_rollback(session, outcome)
    except SQLAlchemyError as exc:  # the rollback stands; only its record is missing
        console.print(f"[yellow]warning: the rollback is not in alert_events: {exc}[/yellow]")


@model_app.command("card")
def model_card(
    version: Annotated[str | None, typer.Argument(help="Version; default production.")] = None,
) -> None:
    """Print a version's model card as JSON."""
    registry = _registry()
    try:
        info = registry.production() if version is None else _find(registry, version)
    except ModelRegistryError as exc:
        console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from None
    typer.echo(json.dumps(info.card, indent=2))


def _find(registry: "ModelRegistry", version: str) -> "ModelVersionInfo":
    for info in registry.versions():
        if info.version == version:
            return info
    raise ModelRegistryError(f"model {registry.name!r} has no version {version!r}")


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ""


if __name__ == "__main__":  # pragma: no cover
    app()
