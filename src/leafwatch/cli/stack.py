"""`leafwatch stack`: the shipped Prometheus and Alertmanager configuration, run here (`up`),
and its rules as the Prometheus Operator's PrometheusRules (`prometheus-rules`)."""

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated, NoReturn

import httpx
import typer
from rich.console import Console
from rich.table import Table

from leafwatch.stack import (
    AlertmanagerOverrides,
    LocalStack,
    StackError,
    StackOptions,
    load_yaml,
    parse_duration,
    render_alertmanager_config,
    secret_files,
)
from leafwatch.stack.k8s import kubernetes_rule_files, render_prometheus_rules

stack_app = typer.Typer(
    help="A local Prometheus and Alertmanager (Debian packages) with the deploy/ configuration;"
    " its rules for the Prometheus Operator.",
    no_args_is_help=True,
)
console = Console()


@stack_app.command("up")
def up(
    leafwatch: Annotated[
        list[str] | None,
        typer.Option(help="LeafWatch to scrape, host:port; repeat for replicas [127.0.0.1:8000]."),
    ] = None,
    node_exporter: Annotated[
        str | None, typer.Option(help="node-exporter to scrape, host:port; default none.")
    ] = None,
    prometheus_port: Annotated[int, typer.Option(min=1, max=65535)] = 9090,
    alertmanager_port: Annotated[int, typer.Option(min=1, max=65535)] = 9093,
    deploy_dir: Annotated[
        Path, typer.Option(help="LeafWatch's deploy/ directory (prometheus/, alertmanager/).")
    ] = Path("deploy"),
    data_dir: Annotated[
        Path, typer.Option(help="Rendered configuration, stored data and logs.")
    ] = Path("var/stack"),
    time_scale: Annotated[
        float,
        typer.Option(
            min=1, help="Divide every rule duration and interval by this (demos: alerts sooner)."
        ),
    ] = 1,
    scrape_interval: Annotated[
        str | None,
        typer.Option(help="Scrape and evaluation interval, e.g. 5s; default as shipped, scaled."),
    ] = None,
    receivers_dir: Annotated[
        Path | None,
        typer.Option(
            help="Directory of the receivers' secret files (smtp_password, Slack webhook URLs,"
            " pagerduty_routing_key); without it notifications cannot be delivered."
        ),
    ] = None,
    metrics_token_file: Annotated[
        Path | None, typer.Option(help="Bearer token file for LeafWatch's /metrics.")
    ] = None,
    admin_token_file: Annotated[
        Path | None,
        typer.Option(
            help="LeafWatch's admin token file, for Alertmanager's calls to its webhook"
            " (/api/v1/alerts); default: leafwatch_admin_token in --receivers-dir."
        ),
    ] = None,
) -> None:
    """Run Prometheus and Alertmanager against a running LeafWatch until Ctrl-C."""
    targets = tuple(leafwatch or ["127.0.0.1:8000"])
    if scrape_interval is not None:
        try:
            parse_duration(scrape_interval)
        except ValueError as exc:
            _fail(f"--scrape-interval: {exc}")
    for target in targets:
        _check_leafwatch(target)
    if not deploy_dir.is_dir():
        _fail(
            f"no deploy directory at {deploy_dir.resolve()}: run from the checkout or pass"
            " --deploy-dir"
        )
    options = StackOptions(
        deploy_dir=deploy_dir,
        data_dir=data_dir,
        leafwatch=targets,
        node_exporter=node_exporter,
        prometheus_port=prometheus_port,
        alertmanager_port=alertmanager_port,
        time_scale=time_scale,
        scrape_interval=scrape_interval,
        evaluation_interval=scrape_interval,
        leafwatch_token_file=metrics_token_file,
        alertmanager=AlertmanagerOverrides(
            secrets_dir=receivers_dir, leafwatch_admin_token_file=admin_token_file
        ),
    )
    _check_receivers(options)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with console.status("starting Alertmanager and Prometheus"):
            stack = LocalStack(options)
            stack.start()
        try:
            _print_urls(stack, options)
            while not stop.wait(0.5):
                if ended := stack.exited():
                    raise StackError(
                        ", ".join(f"{name} exited with {code}" for name, code in ended.items())
                        + f"; logs in {data_dir.resolve()}"
                    )
        finally:
            console.print("stopping Prometheus and Alertmanager")
            stack.stop()
    except StackError as exc:
        _fail(str(exc))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    console.print("stopped")


@stack_app.command("prometheus-rules")
def prometheus_rules(
    rules_dir: Annotated[
        Path, typer.Option(help="The Prometheus rule files (every *.yml but host.yml).")
    ] = Path("deploy/prometheus/rules"),
    output: Annotated[
        Path | None, typer.Option(help="Write the PrometheusRules here; default: print them.")
    ] = None,
    check: Annotated[
        bool, typer.Option(help="Write nothing; exit 1 if --output differs from the rule files.")
    ] = False,
) -> None:
    """Build the Prometheus Operator's PrometheusRules (Kubernetes), one per rule file."""
    files = kubernetes_rule_files(rules_dir)
    if not files:
        _fail(f"no rule files (*.yml) in {rules_dir.resolve()}")
    try:
        text = render_prometheus_rules(files, source_dir=rules_dir.as_posix())
    except ValueError as exc:
        _fail(str(exc))
    if check:
        if output is None:
            _fail("--check needs --output, the file to compare")
        if not output.is_file() or output.read_text() != text:
            _fail(f"{output} differs from {rules_dir}: run without --check to regenerate it")
        console.print(f"{output} matches {rules_dir}")
    elif output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        console.print(f"wrote {output} ({len(files)} rule files)")


def _check_leafwatch(target: str) -> None:
    """Warn when a LeafWatch target does not answer /health: Prometheus will show it down."""
    try:
        httpx.get(f"http://{target}/health", timeout=2).raise_for_status()
    except httpx.HTTPError as exc:
        console.print(
            f"[yellow]warning: LeafWatch at {target} does not answer /health ({exc});"
            " Prometheus will show it down until it does (start it with `leafwatch serve`)[/yellow]"
        )


def _check_receivers(options: StackOptions) -> None:
    """Warn about secret files the receivers will not find: those notifications cannot go out."""
    source = options.alertmanager_source
    if not source.is_file():
        return
    directory = options.alertmanager.secrets_dir
    rendered = render_alertmanager_config(
        load_yaml(source), config_dir=source.parent, overrides=options.alertmanager
    )
    missing = [path for path in secret_files(rendered) if not path.is_file()]
    if not missing:
        return
    names = ", ".join(path.name for path in missing)
    hint = "" if directory else "; pass --receivers-dir with a directory of secret files"
    console.print(
        f"[yellow]warning: no {names} in {missing[0].parent}: notifications that need them"
        f" cannot be delivered, and alerts are visible in the Alertmanager UI only{hint}[/yellow]"
    )


def _print_urls(stack: LocalStack, options: StackOptions) -> None:
    """The addresses to open, one per line so that scripts can read them too."""
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_row("prometheus", stack.prometheus_url)
    table.add_row("alertmanager", stack.alertmanager_url)
    table.add_row("alerts", stack.prometheus_page("alerts"))
    table.add_row("targets", stack.prometheus_page("targets"))
    console.print(table)
    scale = f", durations divided by {options.time_scale:g}" if options.time_scale != 1 else ""
    console.print(
        f"watching {', '.join(options.leafwatch)}{scale}; logs and data in"
        f" {options.data_dir.resolve()}. Ctrl-C stops."
    )


def _fail(message: str) -> NoReturn:
    console.print(f"[red]{message}[/red]")
    raise typer.Exit(1)
