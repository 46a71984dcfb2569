"""A training run as an MLflow run: parameters, per-epoch metrics, held-out figures and the card.

`training_run()` opens the run; training logs each epoch through `TrainingRun.log_epoch`, then
`TrainingRun.log_result(card)` adds the held-out metrics, card.json and the confusion matrix as a
PNG. Registering the model stays with the registry, inside the same `with` block, so the version
points at this run. Needs the [mlflow] extra (mlflow-skinny).
"""

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeGuard

from PIL import Image, ImageDraw, ImageFont

import leafwatch

DEFAULT_EXPERIMENT = "leafwatch"
VERSION_TAG = "leafwatch.version"
CARD_ARTIFACT = "card.json"
CONFUSION_ARTIFACT = "confusion_matrix.png"

_CELL = 56
_PAD = 12
_EMPTY = (255, 255, 255)
_FULL = (24, 70, 140)


def require_mlflow() -> None:
    """Raise an ImportError naming the extra to install when MLflow is missing."""
    try:
        import mlflow  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"MLflow tracking needs the [mlflow] extra: pip install 'leafwatch[mlflow]' ({exc})"
        ) from exc


class TrainingRun:
    """The active MLflow run of one training: what the training loop and the CLI log to."""

    def __init__(self, run_id: str, experiment_id: str, tracking_uri: str) -> None:
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.tracking_uri = tracking_uri

    def log_epoch(self, epoch: int, figures: Mapping[str, float]) -> None:
        """Log one epoch's figures at step `epoch` (train_model's on_epoch callback)."""
        import mlflow

        mlflow.log_metrics(dict(figures), step=epoch)

    def log_result(self, card: Mapping[str, Any]) -> None:
        """Log the training recipe, the held-out metrics, card.json and the confusion matrix."""
        import mlflow

        mlflow.log_params(training_params(card))
        mlflow.log_metrics(heldout_metrics(card))
        mlflow.log_dict(dict(card), CARD_ARTIFACT)
        image = confusion_image(card["metrics"]["confusion_matrix"], card["classes"])
        mlflow.log_image(image, CONFUSION_ARTIFACT)


@contextmanager
def training_run(
    params: Mapping[str, object],
    *,
    tracking_uri: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    artifact_location: str | None = None,
    run_name: str | None = None,
) -> Iterator[TrainingRun]:
    """Start a run in `experiment` with `params` logged and the leafwatch version tagged.

    `tracking_uri` unset leaves MLflow's own choice (MLFLOW_TRACKING_URI, else its default);
    `artifact_location` only applies when the experiment is created here. The run ends FAILED
    when the block raises, and the previous tracking URI is put back afterwards.
    """
    require_mlflow()
    import mlflow

    # is_tracking_uri_set is public but carries no annotations.
    was_set: bool = mlflow.is_tracking_uri_set()  # type: ignore[no-untyped-call, unused-ignore]
    previous_uri = mlflow.get_tracking_uri() if was_set else None
    if tracking_uri is not None:
        mlflow.set_tracking_uri(tracking_uri)
    try:
        found = mlflow.get_experiment_by_name(experiment)
        experiment_id = (
            found.experiment_id
            if found is not None
            else mlflow.create_experiment(experiment, artifact_location=artifact_location)
        )
        with mlflow.start_run(
            experiment_id=experiment_id,
            run_name=run_name,
            tags={VERSION_TAG: leafwatch.__version__},
        ) as run:
            mlflow.log_params(dict(params))
            yield TrainingRun(run.info.run_id, experiment_id, mlflow.get_tracking_uri())
    finally:
        if tracking_uri is not None and previous_uri is not None:
            mlflow.set_tracking_uri(previous_uri)
        elif tracking_uri is not None:
            # None is how MLflow forgets a URI and its environment variable, though the type
            # hint leaves it out; otherwise a test's temporary store would outlive the test.
            mlflow.set_tracking_uri(None)  # type: ignore[arg-type, unused-ignore]


def training_params(card: Mapping[str, Any]) -> dict[str, object]:
    """The card's training recipe as `training.<key>` parameters (its duration is a metric)."""
    training: Mapping[str, object] = card.get("training", {})
    return {f"training.{key}": value for key, value in training.items() if key != "seconds"}


def heldout_metrics(card: Mapping[str, Any]) -> dict[str, float]:
    """The card's numeric figures, flat: held-out metrics, `recall_<class>`, training seconds."""
    metrics: Mapping[str, object] = card.get("metrics", {})
    flat = {key: float(value) for key, value in metrics.items() if _is_number(value)}
    recall = metrics.get("per_class_recall", {})
    if isinstance(recall, Mapping):
        flat.update(
            {f"recall_{name}": float(value) for name, value in recall.items() if _is_number(value)}
        )
    seconds = card.get("training", {}).get("seconds")
    if _is_number(seconds):
        flat["training_seconds"] = float(seconds)
    return flat


def confusion_image(matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> Image.Image:
    """Draw a confusion matrix (rows: true class, columns: predicted) as a labelled grid."""
    if len(matrix) != len(classes) or any(len(row) != len(classes) for row in matrix):
        raise ValueError(
            f"a confusion matrix of {len(classes)} classes must be "
            f"{len(classes)}x{len(classes)}, not {[len(row) for row in matrix]}"
        )
    font = ImageFont.load_default(size=14)
    small = ImageFont.load_default(size=12)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    corner = "true \\ predicted"
    label_width = math.ceil(max(_text_size(measure, text, font)[0] for text in (*classes, corner)))
    left = _PAD + label_width + _PAD
    title_height = math.ceil(_text_size(measure, "Ag", font)[1]) + _PAD
    top = _PAD + title_height + _CELL // 2
    size = len(classes)
    image = Image.new("RGB", (left + size * _CELL + _PAD, top + size * _CELL + _PAD), "white")
    draw = ImageDraw.Draw(image)
    total = sum(map(sum, matrix))
    draw.text((_PAD, _PAD), f"confusion matrix, {total} held-out images", fill="black", font=font)
    _centred(draw, (_PAD + label_width / 2, top - _CELL / 4), corner, small, "dimgray")
    for column, name in enumerate(classes):
        _centred(draw, (left + (column + 0.5) * _CELL, top - _CELL / 4), name, font, "black")
    for row, (name, counts) in enumerate(zip(classes, matrix, strict=True)):
        y = top + row * _CELL
        _centred(draw, (_PAD + label_width / 2, y + _CELL / 2), name, font, "black")
        row_total = sum(counts)
        for column, count in enumerate(counts):
            # Shade by the share of the row, so a class with few images reads like the others;
            # the square root makes a few mistakes visible next to a full diagonal.
            shade = math.sqrt(count / row_total) if row_total else 0.0
            x = left + column * _CELL
            box = (x, y, x + _CELL - 1, y + _CELL - 1)
            draw.rectangle(box, fill=_blend(shade), outline=(200, 200, 200))
            if row == column:
                draw.rectangle(box, outline="black", width=2)
            text_colour = "white" if shade > 0.6 else "black" if count else "darkgray"
            _centred(draw, (x + _CELL / 2, y + _CELL / 2), str(count), font, text_colour)
    return image


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _blend(share: float) -> tuple[int, int, int]:
    r, g, b = (round(e + (f - e) * share) for e, f in zip(_EMPTY, _FULL, strict=True))
    return r, g, b


_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _text_size(draw: ImageDraw.ImageDraw, text: str, font: _Font) -> tuple[float, float]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def _centred(
    draw: ImageDraw.ImageDraw, centre: tuple[float, float], text: str, font: _Font, fill: str
) -> None:
    # Centred by the text's box rather than an anchor: Pillow's bitmap fallback font (no
    # FreeType) does not support anchors.
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = centre[0] - (left + right) / 2
    y = centre[1] - (top + bottom) / 2
    draw.text((x, y), text, fill=fill, font=font)
