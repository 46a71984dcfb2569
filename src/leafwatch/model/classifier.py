"""Serving the model with ONNX Runtime: one session per process, numpy around it."""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from PIL import Image

from leafwatch.model.labels import CLASS_NAMES
from leafwatch.model.preprocess import to_model_input

PROBABILITIES_OUTPUT = "probabilities"
EMBEDDING_OUTPUT = "embedding"
INPUT_NAME = "image"


@dataclass(frozen=True, slots=True)
class ClassifierOutput:
    """What the model says about one image."""

    probabilities: NDArray[np.float32]
    embedding: NDArray[np.float32]

    @property
    def class_id(self) -> int:
        """The predicted class, the most probable one."""
        return int(np.argmax(self.probabilities))

    @property
    def confidence(self) -> float:
        """The probability of the predicted class."""
        return float(self.probabilities[self.class_id])


class Classifier(Protocol):
    """A model that classifies leaf images."""

    name: str
    version: str
    card: dict[str, Any]

    def prepare(self, image: Image.Image) -> NDArray[np.float32]:
        """The model's input for one RGB image."""
        ...

    def run(self, batch: NDArray[np.float32]) -> ClassifierOutput:
        """Classify a prepared input."""
        ...

    def predict(self, image: Image.Image) -> ClassifierOutput:
        """Classify one RGB image."""
        ...


class OnnxClassifier:
    """A Classifier backed by an ONNX model with `probabilities` and `embedding` outputs."""

    def __init__(
        self, model_path: Path, card: dict[str, Any], *, version: str, threads: int = 1
    ) -> None:
        model_bytes = model_path.read_bytes()
        self.name: str = str(card.get("name", model_path.parent.name))
        self.version = version
        self.card = card
        self.sha256 = hashlib.sha256(model_bytes).hexdigest()
        self.input_size = int(card["input_size"])
        classes = tuple(card.get("classes", CLASS_NAMES))
        if classes != CLASS_NAMES:
            raise ValueError(f"model {model_path} predicts {classes}, expected {CLASS_NAMES}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
        )
        outputs = {output.name for output in self._session.get_outputs()}
        if not {PROBABILITIES_OUTPUT, EMBEDDING_OUTPUT} <= outputs:
            raise ValueError(f"model {model_path} lacks outputs probabilities/embedding: {outputs}")

    def prepare(self, image: Image.Image) -> NDArray[np.float32]:
        """The model's input for one RGB image: resized, scaled to [0, 1], channels first."""
        return to_model_input(image, self.input_size)

    def predict(self, image: Image.Image) -> ClassifierOutput:
        """Classify one RGB image."""
        return self.run(self.prepare(image))

    def run(self, batch: NDArray[np.float32]) -> ClassifierOutput:
        """Classify a prepared input."""
        probabilities, embedding = self._session.run(
            [PROBABILITIES_OUTPUT, EMBEDDING_OUTPUT], {INPUT_NAME: batch}
        )
        return ClassifierOutput(
            probabilities=np.asarray(probabilities[0], dtype=np.float32),
            embedding=np.asarray(embedding[0], dtype=np.float32),
        )
