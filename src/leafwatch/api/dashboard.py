"""The built-in dashboard: the page, its static files, and the JSON it draws."""

import gzip
import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib.metadata import version as package_version
from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response
from fastapi.responses import HTMLResponse

from leafwatch.api.deps import RuntimeDep, SessionDep
from leafwatch.api.errors import ERROR_RESPONSES
from leafwatch.schemas_dashboard import DashboardOut
from leafwatch.service.dashboard import TrafficHistory, dashboard_data

router = APIRouter(tags=["monitoring"])

# The page loads nothing from elsewhere: a browser refuses it, and a test would see the refusal.
# Plotly sets inline styles on the elements it draws, hence 'unsafe-inline' for styles only.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'self'"
)
# Asset URLs carry a content hash or the library's version, so browsers may keep them for good.
LONG_CACHE = "public, max-age=31536000, immutable"
OWN_ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}


@dataclass(frozen=True)
class Asset:
    """A static file held in memory, with its gzip form."""

    body: bytes
    gzipped: bytes
    media_type: str

    @property
    def digest(self) -> str:
        """A short hash of the content, for cache-busting URLs."""
        return hashlib.sha256(self.body).hexdigest()[:12]


def plotly_name() -> str:
    """The URL name of the chart library: its version in it, so a new one is a new URL."""
    return f"plotly-{package_version('plotly')}.min.js"


@cache
def asset(name: str) -> Asset | None:
    """One of the dashboard's static files, read on first use; None for an unknown name."""
    if name == plotly_name():
        # plotly.js as the plotly package ships it: nothing of it is kept in this repository.
        body = (files("plotly") / "package_data" / "plotly.min.js").read_bytes()
        media_type = "text/javascript"
    elif name in OWN_ASSETS:
        body = (files("leafwatch.web") / name).read_bytes()
        media_type = OWN_ASSETS[name]
    else:
        return None
    gzipped = gzip.compress(body, compresslevel=6, mtime=0)
    return Asset(body, gzipped, f"{media_type}; charset=utf-8")


@cache
def page() -> str:
    """The dashboard page, its asset URLs filled in."""
    template = (files("leafwatch.web") / "dashboard.html").read_text(encoding="utf-8")
    urls = {
        "plotly_js": f"/dashboard/static/{plotly_name()}",
        **{
            name.replace(".", "_"): f"/dashboard/static/{name}?v={found.digest}"
            for name in OWN_ASSETS
            if (found := asset(name)) is not None
        },
    }
    for key, url in urls.items():
        template = template.replace("{{ " + key + " }}", url)
    return template


async def traffic_history(request: Request) -> TrafficHistory:
    """The app's history of counter snapshots, made on first use (async: no race to make it)."""
    history: TrafficHistory | None = getattr(request.app.state, "dashboard_history", None)
    if history is None:
        history = request.app.state.dashboard_history = TrafficHistory()
    return history


HistoryDep = Annotated[TrafficHistory, Depends(traffic_history)]


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
def dashboard() -> HTMLResponse:
    """The built-in dashboard page; it refreshes itself from /api/v1/dashboard/data."""
    return HTMLResponse(
        page(),
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"},
    )


@router.get("/dashboard/static/{name}", include_in_schema=False)
def static(name: str, accept_encoding: Annotated[str, Header()] = "") -> Response:
    """A static file of the dashboard: its script, its styles, the chart library."""
    found = asset(name)
    if found is None:
        raise HTTPException(404, f"no dashboard file {name[:100]!r}")
    headers = {"Cache-Control": LONG_CACHE, "Vary": "Accept-Encoding"}
    if accepts_gzip(accept_encoding):
        headers["Content-Encoding"] = "gzip"
        return Response(found.gzipped, media_type=found.media_type, headers=headers)
    return Response(found.body, media_type=found.media_type, headers=headers)


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header takes gzip (named or `*`, with a quality above 0)."""
    for part in accept_encoding.lower().split(","):
        coding, *params = (item.strip() for item in part.split(";"))
        if coding not in ("gzip", "*"):
            continue
        quality = next((p[2:] for p in params if p.startswith("q=")), "1")
        try:
            return float(quality) > 0
        except ValueError:
            return False
    return False


@router.get("/api/v1/dashboard/data", response_model=DashboardOut, responses=ERROR_RESPONSES)
def data(runtime: RuntimeDep, session: SessionDep, history: HistoryDep) -> DashboardOut:
    """Every figure the dashboard draws: traffic, predictions, accuracy, drift, usage."""
    classifier = runtime.classifier
    return dashboard_data(
        session,
        families=runtime.exposition.source.collect(),
        history=history,
        now=datetime.fromtimestamp(time.time(), UTC),
        model_name=classifier.name if classifier is not None else None,
        model_version=classifier.version if classifier is not None else None,
    )
