"""POST /api/v1/predict: classify an uploaded leaf photo."""

from typing import Annotated

import structlog
from fastapi import APIRouter, File, Form, UploadFile
from starlette.concurrency import run_in_threadpool

from leafwatch.api.deps import RuntimeDep
from leafwatch.api.errors import ERROR_RESPONSES
from leafwatch.api.security import CLIENT_DEPENDENCIES, CLIENT_RESPONSES
from leafwatch.errors import InvalidImage
from leafwatch.model.labels import CLASS_NAMES
from leafwatch.schemas import PlainText, PredictionOut
from leafwatch.storage.tables import Prediction

router = APIRouter(
    prefix="/api/v1",
    tags=["predictions"],
    dependencies=CLIENT_DEPENDENCIES,
    responses=CLIENT_RESPONSES,
)
log = structlog.stdlib.get_logger(__name__)


@router.post("/predict", response_model=PredictionOut, responses=ERROR_RESPONSES)
async def predict(
    runtime: RuntimeDep,
    file: Annotated[UploadFile, File(description="A leaf photo: JPEG, PNG or WebP.")],
    user_id: Annotated[
        PlainText, Form(min_length=1, max_length=128, description="Who asks (app user id).")
    ],
    user_location: Annotated[
        PlainText | None, Form(max_length=256, description="Where the leaf is, free text.")
    ] = None,
) -> PredictionOut:
    """Classify a banana-leaf photo as Healthy or a Black Sigatoka stage (Stage1..Stage6)."""
    predictor = runtime.predictor()
    metrics = runtime.metrics
    try:
        # Read one byte past the limit: enough to know the file is too large without reading it.
        data = await file.read(predictor.max_bytes + 1)
        if len(data) > predictor.max_bytes:
            raise InvalidImage(
                "file_too_large",
                f"the uploaded file is larger than the limit of {predictor.max_bytes} bytes",
            )
        result = await run_in_threadpool(
            predictor.predict, data, user_id=user_id, user_location=user_location or None
        )
    except InvalidImage as exc:
        metrics.rejected_uploads.labels(reason=exc.code).inc()
        log.info("upload refused", reason=exc.code, user_id=user_id)
        raise
    row = result.row
    structlog.contextvars.bind_contextvars(
        user_id=row.user_id, prediction_id=str(row.id), model_version=row.model_version
    )
    log.info(
        "prediction made",
        predicted_class=row.predicted_class_name,
        confidence=round(row.confidence, 4),
        inference_ms=row.inference_time_ms,
        spooled=result.spooled,
    )
    metrics.record_prediction(
        model_version=row.model_version,
        predicted_class=row.predicted_class_name,
        confidence=row.confidence,
        inference_s=result.inference_s,
    )
    return prediction_out(row)


def prediction_out(row: Prediction) -> PredictionOut:
    """Shape a stored prediction as the API answers it (probabilities as recorded)."""
    probabilities = row.meta.get("probabilities") or []
    return PredictionOut(
        prediction_id=row.id,
        predicted_class_id=row.predicted_class_id,
        predicted_class_name=row.predicted_class_name,
        confidence=row.confidence,
        probabilities=dict(zip(CLASS_NAMES, probabilities, strict=False)),
        model_name=row.model_name,
        model_version=row.model_version,
        inference_time_ms=row.inference_time_ms,
        timestamp=row.timestamp,
    )
