"""Drift references: feature samples a current window is compared with.

A model version's own reference is its held-out leaves, rendered through the serving path and
saved beside the model when it is trained, so a new deployment is checked from its first hour.
A live reference is a window of stored traffic (for example the first week after promotion).
"""

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from leafwatch.model.classifier import Classifier
from leafwatch.model.labels import NUM_CLASSES
from leafwatch.model.preprocess import decode_image
from leafwatch.model.synth import Nuisance, leaf_jpeg
from leafwatch.monitor.features import (
    FEATURES,
    IMAGE_FORMATS,
    PredictionFeatures,
    compute_features,
)

# Held-out leaves per class in a model's reference: enough for the tests to see small shifts.
REFERENCE_PER_CLASS = 300
_DECODE_LIMITS = {"max_bytes": 10 * 2**20, "max_pixels": 40_000_000}


@dataclass(frozen=True)
class FeatureSample:
    """Features of many predictions, column by column."""

    values: dict[str, NDArray[np.float64]]
    classes: NDArray[np.int64]
    formats: NDArray[np.int64]  # index into IMAGE_FORMATS
    embeddings: NDArray[np.float32]  # [n, embedding_dim]

    def __len__(self) -> int:
        return len(self.classes)

    def class_counts(self) -> NDArray[np.int64]:
        """How many predictions of each class."""
        return np.bincount(self.classes, minlength=NUM_CLASSES).astype(np.int64)

    @classmethod
    def from_features(cls, rows: Sequence[PredictionFeatures]) -> "FeatureSample":
        """Columns from per-prediction features."""
        return cls(
            values={
                name: np.array([row.values[name] for row in rows], dtype=np.float64)
                for name in FEATURES
            },
            classes=np.array([row.predicted_class for row in rows], dtype=np.int64),
            formats=np.array([IMAGE_FORMATS.index(row.image_format) for row in rows], np.int64),
            embeddings=(
                np.array([row.embedding for row in rows], dtype=np.float32)
                if rows
                else np.empty((0, 0), dtype=np.float32)
            ),
        )

    def save(self, path: Path) -> None:
        """Write the sample as a compressed .npz file."""
        arrays: dict[str, NDArray[Any]] = {
            "classes": self.classes,
            "formats": self.formats,
            "embeddings": self.embeddings,
        }
        arrays.update({f"feature_{name}": values for name, values in self.values.items()})
        np.savez_compressed(path, **arrays)  # type: ignore[arg-type]  # stubs type **kwds as bool too

    @classmethod
    def load(cls, path: Path) -> "FeatureSample":
        """Read a sample written by `save`."""
        with np.load(path) as data:
            return cls(
                values={name: data[f"feature_{name}"].astype(np.float64) for name in FEATURES},
                classes=data["classes"].astype(np.int64),
                formats=data["formats"].astype(np.int64),
                embeddings=data["embeddings"].astype(np.float32),
            )


def write_reference(
    folder: Path,
    card: dict[str, Any],
    *,
    per_class: int = REFERENCE_PER_CLASS,
    advance: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Build the reference of the model in `folder` from its card's data recipe and save it.

    The leaves come after every training split (same seed and nuisance, never seen in training);
    returns what the card records about them.
    """
    from leafwatch.model.classifier import OnnxClassifier

    data = card["data"]
    start = max(split["indices"][1] for split in data["splits"].values())
    classifier = OnnxClassifier(folder / "model.onnx", card, version="reference")
    sample = build_reference(
        classifier,
        reference_items(start, per_class),
        seed=int(data["seed"]),
        nuisance=Nuisance.from_dict(data["nuisance"]),
        advance=advance,
    )
    sample.save(folder / "reference.npz")
    return {"per_class": per_class, "indices": [start, start + per_class], "count": len(sample)}


def reference_items(start: int, per_class: int = REFERENCE_PER_CLASS) -> list[tuple[int, int]]:
    """(class_id, index) pairs of a reference: every class equally, indices from `start`."""
    return [
        (class_id, index)
        for class_id in range(NUM_CLASSES)
        for index in range(start, start + per_class)
    ]


def build_reference(
    classifier: Classifier,
    items: Sequence[tuple[int, int]],
    *,
    seed: int,
    nuisance: Nuisance,
    workers: int = 2,
    advance: Callable[[int], None] | None = None,
) -> FeatureSample:
    """Render the given leaves, predict each through the serving path, and collect features."""
    chunks = [list(items[start : start + 50]) for start in range(0, len(items), 50)]
    rows: list[PredictionFeatures] = []
    if workers > 1 and len(chunks) > 1:
        # Rendering is the slow part (numpy and Pillow): processes share it; the model runs here.
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            photos: Iterable[list[bytes]] = pool.map(
                _render, chunks, [seed] * len(chunks), [nuisance] * len(chunks)
            )
            rows = _predict_all(classifier, photos, advance)
    else:
        photos = (_render(chunk, seed, nuisance) for chunk in chunks)
        rows = _predict_all(classifier, photos, advance)
    return FeatureSample.from_features(rows)


def _render(chunk: list[tuple[int, int]], seed: int, nuisance: Nuisance) -> list[bytes]:
    return [
        leaf_jpeg(class_id, seed=seed, index=index, nuisance=nuisance) for class_id, index in chunk
    ]


def _predict_all(
    classifier: Classifier,
    photos: Iterable[list[bytes]],
    advance: Callable[[int], None] | None,
) -> list[PredictionFeatures]:
    rows = []
    for chunk in photos:
        for data in chunk:
            decoded = decode_image(data, **_DECODE_LIMITS)
            batch = classifier.prepare(decoded.image)
            output = classifier.run(batch)
            rows.append(
                compute_features(
                    batch,
                    output,
                    width=decoded.width,
                    height=decoded.height,
                    size_bytes=len(data),
                    image_format=decoded.format,
                )
            )
        if advance is not None:
            advance(len(chunk))
    return rows


def main() -> None:
    """`python -m leafwatch.monitor.reference FOLDER`: (re)build a model folder's reference."""
    import json
    import sys

    folder = Path(sys.argv[1])
    card = json.loads((folder / "card.json").read_text())
    card["reference"] = write_reference(folder, card)
    (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card["reference"]))


if __name__ == "__main__":
    main()
