"""Airflow DAG: LeafWatch's drift detection on Airflow's schedule instead of the service's own.

Set LEAFWATCH_DRIFT_INTERVAL_SECONDS=0 on the service so only Airflow schedules the runs, and give
Airflow two Variables: `leafwatch_url` (for example http://leafwatch:8000) and
`leafwatch_admin_token` (the service's LEAFWATCH_ADMIN_TOKEN; keep it in a secrets backend).
Each hourly run asks the service to test its current window (POST /api/v1/drift/run); when drift
has persisted long enough for the service to recommend retraining, the `retrain` task runs.

The functions below need only the standard library, so the file also imports without Airflow
(LeafWatch's tests drive `run_drift` against a real service).
"""

import json
import urllib.request
from datetime import datetime, timedelta
from typing import Any


def run_drift(base_url: str, token: str, *, timeout: float = 120.0) -> dict[str, Any]:
    """Ask LeafWatch to run drift detection now; return its report."""
    request = urllib.request.Request(
        f"{base_url.rstrip('/')}/api/v1/drift/run",
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        report: dict[str, Any] = json.load(response)
    return report


def retraining_recommended(report: dict[str, Any]) -> bool:
    """Whether the report asks for a new model."""
    return bool(report.get("retraining_recommended"))


try:
    from airflow.decorators import dag, task
    from airflow.models import Variable
    from airflow.operators.bash import BashOperator
except ImportError:  # imported for its functions, outside Airflow
    dag = None

if dag is not None:

    @dag(
        dag_id="leafwatch_drift_monitoring",
        schedule="@hourly",
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
        tags=["leafwatch", "monitoring"],
    )
    def leafwatch_drift_monitoring() -> None:
        """Hourly drift run; retrain when drift persists."""

        @task
        def drift() -> dict[str, Any]:
            return run_drift(Variable.get("leafwatch_url"), Variable.get("leafwatch_admin_token"))

        @task.short_circuit
        def needs_retraining(report: dict[str, Any]) -> bool:
            return retraining_recommended(report)

        # An example of what to do: train on fresh data and register (not promote) a candidate,
        # for a person, or the accuracy gate of your pipeline, to promote.
        retrain = BashOperator(task_id="retrain", bash_command="leafwatch train")
        needs_retraining(drift()) >> retrain

    leafwatch_drift_monitoring()
