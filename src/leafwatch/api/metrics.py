"""GET /metrics: the Prometheus scrape endpoint."""

from typing import Annotated

from fastapi import APIRouter, Header, Response
from starlette.concurrency import run_in_threadpool

from leafwatch.api.deps import RuntimeDep, bearer_matches
from leafwatch.errors import Unauthorized

router = APIRouter(tags=["monitoring"])


@router.get("/metrics", include_in_schema=False)
async def metrics(
    runtime: RuntimeDep,
    accept: Annotated[str, Header()] = "",
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    """Every metric, as Prometheus text or as OpenMetrics (with exemplars) when asked for."""
    token = runtime.settings.resolved_metrics_token()
    if token is not None and not bearer_matches(authorization, token):
        raise Unauthorized("/metrics needs the header 'Authorization: Bearer <token>'")
    # Reading the workers' files and the database must not block the event loop.
    body, content_type = await run_in_threadpool(runtime.exposition.render, accept)
    return Response(body, media_type=content_type)
