"""A drift run for the served model: its reference, the current window, the report, what follows."""

import json
import os
import shlex
import signal
import subprocess
import tempfile
from datetime import timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from leafwatch.config import Settings
from leafwatch.errors import DriftUnavailable
from leafwatch.model.registry import ModelVersionInfo
from leafwatch.monitor.drift import DriftOptions, load_window, run_drift
from leafwatch.monitor.reference import FeatureSample
from leafwatch.storage.tables import DriftReport, ModelVersion

log = structlog.stdlib.get_logger(__name__)


def options(settings: Settings) -> DriftOptions:
    """The run's options from the settings."""
    return DriftOptions(
        window=timedelta(hours=settings.drift_window_hours),
        alpha=settings.drift_alpha,
        min_samples=settings.drift_min_samples,
        persistence=settings.drift_persistence,
    )


def reference_for(
    session: Session, *, settings: Settings, model: ModelVersionInfo
) -> tuple[FeatureSample, str]:
    """The reference to compare with, and where it came from; raises DriftUnavailable."""
    if settings.drift_reference == "model":
        if not model.reference_path.is_file():
            raise DriftUnavailable(
                f"model version {model.version} has no drift reference (reference.npz); "
                "retrain it, or set LEAFWATCH_DRIFT_REFERENCE=live"
            )
        return FeatureSample.load(model.reference_path), "model"
    first = session.scalar(
        select(ModelVersion.first_served_at).where(
            ModelVersion.model_name == model.name, ModelVersion.version == model.version
        )
    )
    if first is None:
        raise DriftUnavailable(f"model version {model.version} has not served yet")
    length = timedelta(days=settings.drift_live_reference_days)
    sample = load_window(session, model_version=model.version, start=first, end=first + length)
    return sample, f"live:{first.isoformat()}+{settings.drift_live_reference_days:g}d"


def run_for_model(session: Session, *, settings: Settings, model: ModelVersionInfo) -> DriftReport:
    """Run drift detection for the served version now, store the report, and follow it up."""
    reference, source = reference_for(session, settings=settings, model=model)
    report = run_drift(
        session,
        reference=reference,
        reference_source=source,
        model_version=model.version,
        options=options(settings),
    )
    # Recommend once, when the streak reaches the persistence, not again on every later run.
    if report.details.get("consecutive_drifted_runs") == settings.drift_persistence:
        recommend_retraining(settings, report)
    return report


def recommend_retraining(settings: Settings, report: DriftReport) -> None:
    """Log the recommendation and, when configured, POST it to the webhook."""
    drifted = [f["name"] for f in report.details.get("features", []) if f["drifted"]]
    summary = {
        "event": "retraining_recommended",
        "model_version": report.model_version,
        "report_id": report.id,
        "run_at": report.run_at.isoformat(),
        "consecutive_drifted_runs": report.details.get("consecutive_drifted_runs"),
        "scores": report.scores,
        "drifted_features": drifted,
    }
    log.warning("retraining recommended", **{k: v for k, v in summary.items() if k != "event"})
    if settings.retraining_command:
        run_retraining_command(
            settings.retraining_command,
            summary,
            timeout_s=settings.retraining_command_timeout_seconds,
        )
    url = settings.resolved_retraining_webhook_url()
    if url is None:
        return
    try:
        httpx.post(url, json=summary, timeout=5.0).raise_for_status()
    except httpx.HTTPError as exc:  # the report stands; the hook is a courtesy
        # Not str(exc): it quotes the URL, and a webhook URL is a secret.
        status = exc.response.status_code if isinstance(exc, httpx.HTTPStatusError) else None
        log.warning("retraining webhook failed", error=type(exc).__name__, status=status)


def run_retraining_command(command: str, event: dict[str, Any], *, timeout_s: float) -> bool:
    """Run the command, no shell, with the event as JSON on stdin; log how it ended."""
    try:
        args = shlex.split(command)
    except ValueError as exc:  # an unclosed quote
        log.warning("retraining command could not be read", error=str(exc))
        return False
    if not args:
        log.warning("retraining command is empty")
        return False
    # Only the program is logged: its arguments may carry a token.
    program = args[0]
    # stderr goes to a file, not a pipe: a job the command leaves running may keep it open.
    with tempfile.TemporaryFile() as stderr:
        try:
            # A session of its own, so that a timeout stops what it started too.
            process = subprocess.Popen(
                args,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        except OSError as exc:  # not found, not executable
            log.warning("retraining command could not start", program=program, error=str(exc))
            return False
        with process:
            try:
                process.communicate(json.dumps(event).encode(), timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                log.warning("retraining command timed out", program=program, timeout_s=timeout_s)
                return False
        if process.returncode != 0:
            stderr.seek(0)
            log.warning(
                "retraining command failed",
                program=program,
                returncode=process.returncode,
                stderr=stderr.read()[-2000:].decode("utf-8", "replace"),
            )
            return False
    log.info("retraining command succeeded", program=program)
    return True
