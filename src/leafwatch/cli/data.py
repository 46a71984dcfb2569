"""`leafwatch generate` and `leafwatch train`: synthetic leaves, and a model trained on them."""

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from leafwatch.config import Settings
from leafwatch.errors import ModelRegistryError
from leafwatch.model.labels import CLASS_NAMES

if TYPE_CHECKING:
    from leafwatch.model.registry import ModelRegistry

console = Console()
MLFLOW_URI_PREFIX = "models:/"


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not WIDTHxHEIGHT, e.g. 4000x3000") from None
    if width <= 0 or height <= 0:
        raise typer.BadParameter(f"{text!r}: sizes must be positive")
    return width, height


def generate(
    out: Annotated[Path, typer.Option(help="Folder to write <Class>/<n>.jpg into.")],
    per_class: Annotated[int, typer.Option(min=1, help="Images per class.")] = 50,
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives the same images.")] = 0,
    brightness: Annotated[
        tuple[float, float] | None, typer.Option(help="Exposure factor range, e.g. 0.4 0.6.")
    ] = None,
    blur: Annotated[
        tuple[float, float] | None, typer.Option(help="Gaussian blur radius range (px).")
    ] = None,
    background: Annotated[
        list[str] | None, typer.Option(help="Background kind; repeat for several.")
    ] = None,
    resolution: Annotated[
        list[str] | None, typer.Option(help="Output WIDTHxHEIGHT; repeat for several.")
    ] = None,
    jpeg_quality: Annotated[
        tuple[int, int] | None, typer.Option(help="JPEG quality range, e.g. 40 60.")
    ] = None,
    rotation: Annotated[
        tuple[float, float] | None, typer.Option(help="Rotation range in degrees.")
    ] = None,
    class_weights: Annotated[
        str | None,
        typer.Option(help="Seven relative class frequencies, Healthy..Stage6, e.g. 1,1,1,1,1,4,4."),
    ] = None,
) -> None:
    """Generate synthetic banana-leaf images of every class, with controllable nuisance factors."""
    from dataclasses import replace

    from leafwatch.model.synth import Nuisance, generate_dataset

    nuisance = Nuisance()
    changes: dict[str, object] = {
        "brightness": brightness,
        "blur": blur,
        "background": tuple(background) if background else None,
        "resolution": tuple(_size(text) for text in resolution) if resolution else None,
        "jpeg_quality": jpeg_quality,
        "rotation": rotation,
    }
    try:
        nuisance = replace(nuisance, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    weights = None
    if class_weights:
        try:
            weights = [float(part) for part in class_weights.split(",")]
        except ValueError:
            raise typer.BadParameter(f"{class_weights!r} is not comma-separated numbers") from None
        if len(weights) != len(CLASS_NAMES) or min(weights) < 0 or sum(weights) <= 0:
            raise typer.BadParameter(f"give {len(CLASS_NAMES)} non-negative weights, not all zero")
    try:
        paths = generate_dataset(
            out, per_class=per_class, seed=seed, nuisance=nuisance, class_weights=weights
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    console.print(f"wrote {len(paths)} images under {out}")


def train(
    seed: Annotated[int, typer.Option(help="Seed of the data and the training.")] = 7,
    per_class: Annotated[
        int | None, typer.Option(min=1, help="Training images per class (default: recipe's).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Epochs (default: recipe's).")] = None,
    input_size: Annotated[
        int | None, typer.Option(min=16, help="Model input side in pixels (default: recipe's).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Also keep model.onnx and card.json in this folder.")
    ] = None,
    register: Annotated[
        bool, typer.Option(help="Register the result as a new version in the registry.")
    ] = True,
    promote: Annotated[bool, typer.Option(help="Promote the new version to production.")] = False,
    use_mlflow: Annotated[
        bool,
        typer.Option(
            "--mlflow/--no-mlflow",
            help="Log the run to MLflow and register the model there "
            "[LEAFWATCH_MODEL_URI=models:/..., LEAFWATCH_MLFLOW_TRACKING_URI].",
        ),
    ] = False,
) -> None:
    """Train, calibrate and export a model on generated leaves (needs the [train] extra)."""
    try:
        from leafwatch.model.train import (
            DEFAULT_EPOCHS,
            DEFAULT_INPUT_SIZE,
            DEFAULT_PER_CLASS,
            train_model,
        )
    except ImportError as exc:
        # Escaped: rich would take [train] for markup and drop it.
        console.print(
            "[red]"
            + escape(f"training needs the [train] extra: pip install 'leafwatch[train]' ({exc})")
        )
        raise typer.Exit(1) from None
    from leafwatch.model.registry import open_registry

    options: dict[str, Any] = {
        "seed": seed,
        "per_class": per_class or DEFAULT_PER_CLASS,
        "epochs": epochs or DEFAULT_EPOCHS,
        "input_size": input_size or DEFAULT_INPUT_SIZE,
    }
    if use_mlflow:
        # Checked before training: finding out after an hour's run would waste the run.
        settings = _mlflow_settings(register=register)
        with tempfile.TemporaryDirectory() as scratch:
            folder = out or Path(scratch)
            folder.mkdir(parents=True, exist_ok=True)
            _train_with_mlflow(folder, options, settings, register=register, promote=promote)
        return

    with tempfile.TemporaryDirectory() as scratch:
        folder = out or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        card = train_model(folder, **options)
        _print_card(card)
        if register:
            # The registry the service reads: MLflow when LEAFWATCH_MODEL_URI names one.
            registry = open_registry(Settings())
            registry.ensure_seeded()
            _register(registry, folder, card, promote=promote)


def _mlflow_settings(*, register: bool) -> Settings:
    """The settings, once it is certain that MLflow is installed and, to register, named."""
    from leafwatch.model.experiment import require_mlflow

    try:
        require_mlflow()
    except ImportError as exc:
        console.print(f"[red]{escape(str(exc))}")
        raise typer.Exit(1) from None
    settings = Settings()
    if register and not (settings.model_uri or "").startswith(MLFLOW_URI_PREFIX):
        console.print(
            "[red]--mlflow registers the model in MLflow, but LEAFWATCH_MODEL_URI is "
            f"{settings.model_uri!r}: set LEAFWATCH_MODEL_URI=models:/NAME@production "
            "(e.g. models:/banana_sigatoka_detector@production) and "
            "LEAFWATCH_MLFLOW_TRACKING_URI (e.g. sqlite:///var/mlflow.db)"
        )
        raise typer.Exit(1)
    return settings


def _train_with_mlflow(
    folder: Path, options: dict[str, Any], settings: Settings, *, register: bool, promote: bool
) -> None:
    from leafwatch.model.experiment import training_run
    from leafwatch.model.registry import open_registry
    from leafwatch.model.train import train_model

    # Registering inside the run makes the new version's files this run's artifacts.
    with training_run(options, tracking_uri=settings.mlflow_tracking_uri) as run:
        console.print(f"MLflow run [bold]{run.run_id}[/bold] at {run.tracking_uri}")
        card = train_model(folder, **options, on_epoch=run.log_epoch)
        run.log_result(card)
        _print_card(card)
        if register:
            _register(open_registry(settings), folder, card, promote=promote)
    console.print(f"logged MLflow run [bold]{run.run_id}[/bold]")


def _register(
    registry: "ModelRegistry", folder: Path, card: dict[str, Any], *, promote: bool
) -> None:
    try:
        info = registry.register(folder / "model.onnx", card)
        console.print(f"registered {info.name} version [bold]{info.version}[/bold]")
        if promote:
            registry.promote(info.version)
            console.print(f"version {info.version} is now in production")
    except ModelRegistryError as exc:
        console.print(f"[red]{escape(exc.detail)}")
        raise typer.Exit(1) from None


def _print_card(card: dict[str, object]) -> None:
    metrics = card.get("metrics", {})
    assert isinstance(metrics, dict)
    table = Table(title="held-out evaluation")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in ("heldout_accuracy", "ece", "ece_before_calibration", "temperature"):
        if key in metrics:
            table.add_row(key, f"{metrics[key]:.4f}")
    for name, recall in dict(metrics.get("per_class_recall", {})).items():
        table.add_row(f"recall {name}", f"{recall:.4f}")
    console.print(table)
