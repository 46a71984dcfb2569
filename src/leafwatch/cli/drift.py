"""`leafwatch drift`: run drift detection now and print a readable report."""

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from leafwatch.config import Settings
from leafwatch.errors import DriftUnavailable

console = Console()


def drift(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the stored report as JSON.")
    ] = False,
) -> None:
    """Test the served model's recent traffic for drift now, store the report and print it."""
    from leafwatch.api.drift import drift_report_out
    from leafwatch.cli.database import database_session
    from leafwatch.cli.main import _registry
    from leafwatch.service.drift import run_for_model

    settings = Settings()
    try:
        with database_session(settings) as session:
            registry = _registry()
            with console.status("testing the current window against the reference"):
                report = drift_report_out(
                    run_for_model(session, settings=settings, model=registry.production())
                )
    except DriftUnavailable as exc:
        console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(report.model_dump(mode="json"), indent=2))
        return
    colour = {"ok": "green", "drift": "red", "not_enough_data": "yellow"}[report.status]
    console.print(
        f"model version [bold]{report.model_version}[/bold]: [{colour}]{report.status}[/{colour}]"
        f"  current window {report.window_start:%Y-%m-%d %H:%M} to {report.window_end:%H:%M} UTC,"
        f" {report.current_size} predictions against {report.reference_size}"
        f" ({report.reference_source} reference), {report.seconds:.2f} s"
    )
    if report.status == "not_enough_data":
        console.print(f"need at least {settings.drift_min_samples} predictions on each side")
        return
    scores = Table(title="data_drift_score")
    scores.add_column("metric_type")
    scores.add_column("score", justify="right")
    for name, value in report.scores.items():
        scores.add_row(name, "-" if value is None else f"{value:.3f}")
    console.print(scores)
    console.print(_features_table(report.details.get("features", [])))
    for name in ("classes", "confidence", "embedding"):
        test = report.details.get(name, {})
        verdict = "[red]drifted[/red]" if test.get("drifted") else "no drift"
        console.print(f"{name}: {verdict} (p = {_num(test.get('p_value'))})")
    if report.retraining_recommended:
        console.print("[bold red]retraining recommended[/bold red]: drift has persisted")


def _features_table(features: list[dict[str, Any]]) -> Table:
    table = Table(title="features (KS with Benjamini-Hochberg; PSI beside)")
    for column in ("feature", "KS", "p adjusted", "PSI", "reference mean", "current mean", ""):
        table.add_column(column, justify="left" if column == "feature" else "right")
    for feature in features:
        mark = f"[red]{feature['direction']}[/red]" if feature["drifted"] else ""
        table.add_row(
            feature["name"],
            _num(feature["ks_statistic"]),
            _num(feature["adjusted_p_value"]),
            _num(feature["psi"]),
            _num(feature["reference"]["mean"]),
            _num(feature["current"]["mean"]),
            mark,
        )
    return table


def _num(value: object) -> str:
    if not isinstance(value, float | int):
        return "-"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
