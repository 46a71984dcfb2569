"""A prediction from upload to stored row: decode, classify, store the image, write the row."""

import time
import uuid
from concurrent.futures import Executor, Future
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from leafwatch.model.classifier import Classifier, ClassifierOutput
from leafwatch.model.labels import CLASS_NAMES
from leafwatch.model.preprocess import decode_image
from leafwatch.storage import queries
from leafwatch.storage.images import ImageStore, StagedImage
from leafwatch.storage.tables import Prediction, utcnow


@dataclass(frozen=True, slots=True)
class PredictionResult:
    """The stored row and the model's full output."""

    row: Prediction
    output: ClassifierOutput
    inference_s: float


@dataclass(frozen=True, slots=True)
class Predictor:
    """Everything a prediction needs, put together once per process."""

    classifier: Classifier
    images: ImageStore
    sessions: sessionmaker[Session]
    io: Executor
    max_bytes: int
    max_pixels: int

    def predict(self, data: bytes, *, user_id: str, user_location: str | None) -> PredictionResult:
        """Classify uploaded image bytes and record the prediction; raises InvalidImage."""
        # Hashing and writing the upload overlap with decoding and inference; only a valid
        # image is then committed to the store, a refused one is discarded.
        staging = self.io.submit(self.images.stage, data)
        try:
            decoded = decode_image(data, max_bytes=self.max_bytes, max_pixels=self.max_pixels)
            started = time.perf_counter()
            output = self.classifier.predict(decoded.image)
            inference_s = time.perf_counter() - started
        except BaseException:
            _discard(staging)
            raise
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
        with self.sessions() as session:
            queries.add(session, row=row)
        return PredictionResult(row=row, output=output, inference_s=inference_s)


def _discard(staging: Future[StagedImage]) -> None:
    if staging.exception() is None:  # waits for the staging to finish
        staging.result().discard()


_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
