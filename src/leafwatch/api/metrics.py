"""GET /metrics: the Prometheus scrape endpoint."""

import hmac
from typing import Annotated

from fastapi import APIRouter, Header, Response
from starlette.concurrency import run_in_threadpool

from leafwatch.api.deps import RuntimeDep
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
    if token is not None and not _bearer_matches(authorization, token):
        raise Unauthorized("/metrics needs the header 'Authorization: Bearer <token>'")
    # Reading the workers' files and the database must not block the event loop.
    body, content_type = await run_in_threadpool(runtime.exposition.render, accept)
    return Response(body, media_type=content_type)


def _bearer_matches(authorization: str | None, token: str) -> bool:
    scheme, _, credentials = (authorization or "").partition(" ")
    # Bytes: compare_digest refuses non-ASCII text, which a header may carry.
    given = credentials.strip().encode("utf-8", "surrogateescape")
    return scheme.lower() == "bearer" and hmac.compare_digest(given, token.encode("utf-8"))
