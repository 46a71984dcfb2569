"""Liveness, readiness and the serving model's card."""

import sqlite3
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from leafwatch.api.deps import AdminDep, RuntimeDep
from leafwatch.api.errors import ERROR_RESPONSES
from leafwatch.errors import ModelNotReady
from leafwatch.schemas import HealthOut, ModelInfoOut, ModelReloadOut, ReadyOut
from leafwatch.storage import db

router = APIRouter(tags=["health"])


# Answered on the event loop, not in the thread pool: a pool busy with slow requests does not
# make a live process look dead, and a stuck event loop, which is what liveness is for, does.
@router.get("/health", response_model=HealthOut)
async def health() -> HealthOut:
    """The process is alive (it answers); says nothing of the database or the model."""
    return HealthOut(status="ok")


# Degraded answers 200: predictions are still served and nothing accepted is lost, so a load
# balancer should keep sending traffic; the status, the problem and the spool depth say the rest.
@router.get("/ready", response_model=ReadyOut, responses={503: {"model": ReadyOut}})
def ready(runtime: RuntimeDep) -> JSONResponse:
    """Ready: the model is loaded and the database answers, or it is away and the spool works.

    `ready` and `degraded` (database away, records spooled) answer 200, `not_ready` 503.
    """
    problems = []
    answers = db.ping(runtime.engine)
    database = answers
    if not answers:
        problems.append("the database does not answer")
    else:
        revision = db.current_revision(runtime.engine)
        state = db.schema_state(revision)
        if state == "behind":
            database = False
            problems.append(
                f"the database schema is at {revision or 'nothing'}, not {db.head_revision()}: "
                "run `leafwatch db upgrade`"
            )
        elif state == "ahead":
            problems.append(
                f"the database schema is at {revision}, newer than this release's "
                f"{db.head_revision()}: an upgrade is rolling out"
            )
    model = runtime.classifier is not None
    if not model:
        problems.append(f"the model is not loaded: {runtime.model_error}")
    spool, depth = runtime.recorder.spool is not None, 0
    try:
        depth = runtime.recorder.spool_depth()
    except (OSError, sqlite3.Error) as exc:
        spool = False
        problems.append(f"the spool cannot be read: {exc}")
    status: Literal["ready", "degraded", "not_ready"] = "not_ready"
    if database and model:
        status = "ready"
    elif model and spool and not answers:
        status = "degraded"
        problems.append(
            f"predictions and feedback go to the local spool ({depth} records waiting) "
            "until the database answers"
        )
    body = ReadyOut(
        status=status,
        database=database,
        spool=spool,
        spool_depth=depth,
        model=model,
        model_version=runtime.classifier.version if runtime.classifier else None,
        problems=problems,
    )
    return JSONResponse(body.model_dump(), status_code=503 if status == "not_ready" else 200)


@router.get("/model/info", response_model=ModelInfoOut, responses=ERROR_RESPONSES)
def model_info(runtime: RuntimeDep) -> ModelInfoOut:
    """The model that serves: name, version, classes, input size and its card's metrics."""
    classifier = runtime.classifier
    if classifier is None:
        raise ModelNotReady(f"the model is not loaded: {runtime.model_error}")
    card = classifier.card
    return ModelInfoOut(
        model_name=classifier.name,
        model_version=classifier.version,
        classes=list(card["classes"]),
        input_size=classifier.input_size,
        embedding_dim=card.get("embedding_dim"),
        onnx_sha256=classifier.sha256,
        created_at=card.get("created_at"),
        metrics=card.get("metrics", {}),
        data=card.get("data", {}),
    )


@router.post("/api/v1/admin/model/reload", response_model=ModelReloadOut, responses=ERROR_RESPONSES)
async def reload_model(runtime: RuntimeDep, _admin: AdminDep) -> ModelReloadOut:
    """Serve the registry's production version now if it changed (needs the admin token)."""
    changed = await run_in_threadpool(runtime.reload_model)
    classifier = runtime.classifier
    return ModelReloadOut(
        model_version=classifier.version if classifier is not None else None,
        changed=changed is not None,
    )
