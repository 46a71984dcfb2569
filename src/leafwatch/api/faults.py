"""The fault switch (admin, and only when LEAFWATCH_FAULTS_ENABLED is true)."""

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from leafwatch.api.deps import AdminDep, RuntimeDep
from leafwatch.api.errors import ERROR_RESPONSES
from leafwatch.errors import UnknownRoute
from leafwatch.runtime import Runtime
from leafwatch.schemas import FaultIn, FaultOut, FaultsOut
from leafwatch.service.faults import Fault, FaultSwitch

PREFIX = "/api/v1/admin/faults"
router = APIRouter(prefix=PREFIX, tags=["admin"])


async def inject_faults(request: Request, runtime: RuntimeDep) -> None:
    """Delay or fail the request as its route's injected fault says (an app-wide dependency)."""
    path = getattr(request.scope.get("route"), "path", None)
    if isinstance(path, str) and not path.startswith(PREFIX):
        await _switch(runtime).apply(path)


@router.get("", response_model=FaultsOut, responses=ERROR_RESPONSES)
async def list_faults(runtime: RuntimeDep, _admin: AdminDep) -> FaultsOut:
    """The faults in force."""
    faults = await run_in_threadpool(_switch(runtime).active)
    return FaultsOut(faults=[_out(fault) for fault in faults])


@router.post("", response_model=FaultsOut, responses=ERROR_RESPONSES)
async def set_fault(
    fault: FaultIn, request: Request, runtime: RuntimeDep, _admin: AdminDep
) -> FaultsOut:
    """Inject latency and/or server errors on one route (replacing its previous fault)."""
    _check_route(request, fault.route)
    switch = _switch(runtime)
    await run_in_threadpool(
        lambda: switch.set(
            fault.route,
            latency_ms=fault.latency_ms,
            error_ratio=fault.error_ratio,
            duration_s=fault.duration_seconds,
        )
    )
    faults = await run_in_threadpool(switch.active)
    return FaultsOut(faults=[_out(fault) for fault in faults])


@router.delete("", response_model=FaultsOut, responses=ERROR_RESPONSES)
async def clear_faults(
    request: Request,
    runtime: RuntimeDep,
    _admin: AdminDep,
    route: str | None = Query(None, description="Clear only this route's fault."),
) -> FaultsOut:
    """Clear every injected fault, or one route's."""
    if route is not None:
        _check_route(request, route)
    switch = _switch(runtime)
    removed = await run_in_threadpool(switch.clear, route)
    faults = await run_in_threadpool(switch.active)
    return FaultsOut(faults=[_out(fault) for fault in faults], removed=removed)


def _switch(runtime: Runtime) -> FaultSwitch:
    assert runtime.faults is not None, "the faults router is mounted only with the switch on"
    return runtime.faults


def _check_route(request: Request, route: str) -> None:
    # The documented routes: /metrics is left out, so a fault never looks like a scrape failure.
    paths = request.app.openapi()["paths"]
    templates = sorted(path for path in paths if not path.startswith(PREFIX))
    if route not in templates:
        raise UnknownRoute(f"route must be one of the route templates: {', '.join(templates)}")


def _out(fault: Fault) -> FaultOut:
    return FaultOut.model_validate(fault, from_attributes=True)
