"""A prediction from upload to stored row: decode, classify, store the image, record the row."""

import contextvars
import time
import uuid
from concurrent.futures import Executor, Future
from dataclasses import dataclass

from opentelemetry.trace import Tracer

from leafwatch.model.classifier import Classifier, ClassifierOutput
from leafwatch.model.labels import CLASS_NAMES
from leafwatch.model.preprocess import decode_image
from leafwatch.monitor.features import compute_features
from leafwatch.service.recorder import Recorder
from leafwatch.storage.images import ImageStore, StagedImage
from leafwatch.storage.tables import Prediction, utcnow


@dataclass(frozen=True, slots=True)
class PredictionResult:
    """The stored row and the model's full output."""

    row: Prediction
    output: ClassifierOutput
    inference_s: float
    spooled: bool  # the database was away: the row waits in the local spool


@dataclass(frozen=True, slots=True)
class Predictor:
    """Everything a prediction needs, put together once per process."""

    classifier: Classifier
    images: ImageStore
    recorder: Recorder
    io: Executor
    tracer: Tracer
    max_bytes: int
    max_pixels: int

    def predict(self, data: bytes, *, user_id: str, user_location: str | None) -> PredictionResult:
        """Classify uploaded image bytes and record the prediction; raises InvalidImage."""
        tracer = self.tracer
        # Hashing and writing the upload overlap with decoding and inference; only a valid
        # image is then committed to the store, a refused one is discarded. The staging thread
        # runs in this request's context, so its span joins the request's trace.
        staging = self.io.submit(contextvars.copy_context().run, self._stage, data)
        try:
            with tracer.start_as_current_span("decode") as span:
                decoded = decode_image(data, max_bytes=self.max_bytes, max_pixels=self.max_pixels)
                span.set_attributes(
                    {
                        "image.format": decoded.format,
                        "image.bytes": len(data),
                        "image.width": decoded.width,
                        "image.height": decoded.height,
                    }
                )
            with tracer.start_as_current_span("preprocess"):
                batch = self.classifier.prepare(decoded.image)
            with tracer.start_as_current_span("inference") as span:
                started = time.perf_counter()
                output = self.classifier.run(batch)
                inference_s = time.perf_counter() - started
                span.set_attributes(
                    {
                        "model.version": self.classifier.version,
                        "model.predicted_class": CLASS_NAMES[output.class_id],
                        "model.confidence": output.confidence,
                    }
                )
            with tracer.start_as_current_span("features"):
                features = compute_features(
                    batch,
                    output,
                    width=decoded.width,
                    height=decoded.height,
                    size_bytes=len(data),
                    image_format=decoded.format,
                )
        except BaseException:
            _discard(staging)
            raise
        with tracer.start_as_current_span("image_store.commit"):
            stored = staging.result().commit(extension=_EXTENSIONS[decoded.format])
        class_id = output.class_id
        row = Prediction(
            id=uuid.uuid4(),
            user_id=user_id,
            user_location=user_location,
            image_path=stored.path,
            image_size_kb=round(len(data) / 1024.0, 3),
            image_width=decoded.width,
            image_height=decoded.height,
            image_hash=stored.sha256,
            predicted_class_id=class_id,
            predicted_class_name=CLASS_NAMES[class_id],
            confidence=output.confidence,
            model_version=self.classifier.version,
            model_name=self.classifier.name,
            inference_time_ms=round(inference_s * 1000.0, 3),
            timestamp=utcnow(),
            meta={
                "image_format": decoded.format,
                "probabilities": [round(float(p), 6) for p in output.probabilities],
            },
        )
        with tracer.start_as_current_span("database.write") as span:
            # On disk (database or spool) before the answer: an answer promises a stored record.
            spooled = self.recorder.save_prediction(row, features)
            span.set_attribute("leafwatch.spooled", spooled)
        return PredictionResult(row=row, output=output, inference_s=inference_s, spooled=spooled)

    def _stage(self, data: bytes) -> StagedImage:
        with self.tracer.start_as_current_span("image_store.stage"):
            return self.images.stage(data)


def _discard(staging: Future[StagedImage]) -> None:
    if staging.exception() is None:  # waits for the staging to finish
        staging.result().discard()


_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
