"""A run's outcome as tables: for the terminal (rich), for docs (Markdown) and as JSON."""

from typing import Any

from rich.table import Table

from leafwatch.simulate.runner import SimulationResult
from leafwatch.simulate.timeline import Detection, PhaseSpan


def phase_label(span: PhaseSpan) -> str:
    """`3. +300% latency (day 3)`."""
    day = f" (day {span.day})" if span.day else ""
    return f"{span.index + 1}. {span.name}{day}"


def delay_text(row: Detection, source: str) -> str:
    """How long after the phase began a source saw the alert fire."""
    delay = row.delays.get(source)
    if delay is None:
        return "-"
    if row.already_firing and delay == 0:
        return "already firing"
    return f"{delay:.0f} s"


def verdict(row: Detection) -> str:
    """fired, missed (expected, did not fire) or unexpected."""
    if row.expected:
        return "fired" if row.fired else "MISSED"
    return "unexpected"


def detection_table(result: SimulationResult) -> Table:
    """Per phase, each alert expected or fired, and after how long each source saw it."""
    table = Table(
        title=f"alerts of scenario {result.scenario.name} (delays from the phase's start)"
    )
    for column in ("phase", "alert", "outcome", *result.sources):
        table.add_column(column)
    for row in result.detections:
        style = {"MISSED": "red", "unexpected": "yellow"}.get(verdict(row), "")
        table.add_row(
            phase_label(row.phase),
            row.alert,
            verdict(row),
            *(delay_text(row, source) for source in result.sources),
            style=style,
        )
    return table


def phase_table(result: SimulationResult) -> Table:
    """Per phase: how long it ran, what was sent, answered, failed, and how right the model was."""
    table = Table(title="traffic per phase")
    for column in ("phase", "seconds", "sent", "5xx", "no answer", "p50 ms", "p95 ms", "right"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    for span in result.spans:
        tally = result.tallies.get(span.index)
        if tally is None:
            continue
        quantiles = tally.latency_quantiles()
        table.add_row(
            phase_label(span),
            f"{span.ended - span.started:.0f}",
            str(tally.sent),
            str(tally.server_errors),
            str(tally.failures),
            f"{quantiles[0] * 1000:.0f}" if quantiles else "-",
            f"{quantiles[1] * 1000:.0f}" if quantiles else "-",
            accuracy_text(tally.verdicts),
        )
    return table


def accuracy_text(verdicts: dict[str, list[int]]) -> str:
    """`v1 99% of 120, v2 41% of 80`: how often each version was right."""
    parts = [
        f"v{version} {right / total:.0%} of {total}"
        for version, (right, total) in sorted(verdicts.items())
        if total
    ]
    return ", ".join(parts) or "-"


def markdown(result: SimulationResult) -> str:
    """The detection table in Markdown, for docs/benchmarks.md."""
    header = ["phase", "alert", "outcome", *(f"{source} (s)" for source in result.sources)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in result.detections:
        cells = [phase_label(row.phase), row.alert, verdict(row)]
        cells += [delay_text(row, source).removesuffix(" s") for source in result.sources]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def as_json(result: SimulationResult) -> dict[str, Any]:
    """Everything the run found, JSON-ready."""
    options = result.options
    return {
        "scenario": result.scenario.name,
        "started_at": result.started_at.isoformat(),
        "speed": options.speed,
        "rate": options.rate,
        "url": options.url,
        "sources": result.sources,
        "phases": [
            {
                "index": span.index,
                "name": span.name,
                "day": span.day,
                "started": round(span.started, 2),
                "ended": round(span.ended, 2),
                "expect": list(span.expect),
            }
            for span in result.spans
        ],
        "detections": [
            {
                "phase": row.phase.index,
                "alert": row.alert,
                "expected": row.expected,
                "already_firing": row.already_firing,
                "delays": {k: None if v is None else round(v, 2) for k, v in row.delays.items()},
            }
            for row in result.detections
        ],
        "traffic": {
            str(index): {
                "sent": tally.sent,
                "answered": tally.answered,
                "server_errors": tally.server_errors,
                "client_errors": tally.client_errors,
                "failures": tally.failures,
                "skipped": tally.skipped,
                "feedback_sent": tally.feedback_sent,
                "verdicts": tally.verdicts,
            }
            for index, tally in result.tallies.items()
        },
        "versions": [[round(at, 2), version] for at, version in result.versions],
        "notes": [[round(note.at, 2), note.text] for note in result.notes],
        "alert_events": result.alert_events,
    }
