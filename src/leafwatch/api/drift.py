"""Drift: the latest report, and a run on demand (admin)."""

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from leafwatch.api.deps import AdminDep, RuntimeDep, SessionDep
from leafwatch.api.errors import ERROR_RESPONSES
from leafwatch.errors import NoDriftReport
from leafwatch.monitor.drift import latest_report
from leafwatch.schemas import DriftReportOut
from leafwatch.storage.tables import DriftReport

router = APIRouter(prefix="/api/v1/drift", tags=["monitoring"])


@router.get("", response_model=DriftReportOut, responses=ERROR_RESPONSES)
def latest(session: SessionDep) -> DriftReportOut:
    """The latest drift report."""
    report = latest_report(session)
    if report is None:
        raise NoDriftReport("no drift run has been stored yet; POST /api/v1/drift/run runs one")
    return drift_report_out(report)


@router.post("/run", response_model=DriftReportOut, responses=ERROR_RESPONSES)
async def run(runtime: RuntimeDep, _admin: AdminDep) -> DriftReportOut:
    """Run drift detection now and return its report (needs the admin token)."""
    return drift_report_out(await run_in_threadpool(runtime.run_drift))


def drift_report_out(report: DriftReport) -> DriftReportOut:
    """Shape a stored drift report."""
    return DriftReportOut(
        report_id=report.id,
        run_at=report.run_at,
        model_version=report.model_version,
        reference_source=report.reference_source,
        reference_size=report.reference_size,
        window_start=report.window_start,
        window_end=report.window_end,
        current_size=report.current_size,
        status=report.status,
        drifted=report.drifted,
        retraining_recommended=report.retraining_recommended,
        scores=report.scores,
        details=report.details,
        seconds=report.seconds,
    )
