"""Train the leaf classifier on generated photos, calibrate it, and export ONNX with a model card.

The pipeline: render train / calibration / test splits through exactly the serving path (JPEG,
decode_image, to_model_input), fit a small CNN, fit a temperature on the calibration split, export
`probabilities` (temperature folded in) and `embedding` to ONNX, and measure the exported model on
the test split with ONNX Runtime, since that is the artefact that serves.

Needs the [train] extra (torch, onnx, onnxscript).
"""

import argparse
import contextlib
import hashlib
import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import nn

from leafwatch.model.calibration import expected_calibration_error
from leafwatch.model.labels import CLASS_NAMES, NUM_CLASSES
from leafwatch.model.preprocess import decode_image, to_model_input
from leafwatch.model.synth import Nuisance, leaf_jpeg
from leafwatch.monitor.reference import REFERENCE_PER_CLASS, write_reference

MODEL_NAME = "banana_sigatoka_detector"
DEFAULT_PER_CLASS = 600
DEFAULT_EPOCHS = 12
DEFAULT_INPUT_SIZE = 128
EMBEDDING_DIM = 32
BATCH_SIZE = 64
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-4
THREADS = 2
# The same limits the API applies to uploads.
_DECODE_LIMITS = {"max_bytes": 10 * 2**20, "max_pixels": 40_000_000}
_ECE_BINS = 15

# Called after every epoch with its number (1-based) and train_loss, train_accuracy and
# learning_rate (the rate of the epoch's last step).
EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True, slots=True)
class Split:
    """A slice of generated images: per class, indices [start, start + per_class)."""

    name: str
    start: int
    per_class: int

    def items(self) -> list[tuple[int, int]]:
        """The (class_id, index) pairs of this split, class by class."""
        return [
            (class_id, self.start + offset)
            for class_id in range(NUM_CLASSES)
            for offset in range(self.per_class)
        ]

    def labels(self) -> NDArray[np.int64]:
        """The class of each item, in the order of items()."""
        return np.repeat(np.arange(NUM_CLASSES, dtype=np.int64), self.per_class)


def train_model(
    out_dir: Path,
    *,
    seed: int = 7,
    per_class: int = DEFAULT_PER_CLASS,
    epochs: int = DEFAULT_EPOCHS,
    input_size: int = DEFAULT_INPUT_SIZE,
    reference_per_class: int = REFERENCE_PER_CLASS,
    progress: bool = True,
    on_epoch: EpochCallback | None = None,
) -> dict[str, Any]:
    """Train, calibrate and export model.onnx, card.json and the drift reference.npz to out_dir.

    Returns the card. `on_epoch`, when given, gets each epoch's number (from 1) and figures.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    nuisance = Nuisance()
    # One seed, disjoint index ranges: every image of every split is a different leaf.
    calibration_size = max(per_class // 3, 4)
    test_size = max(per_class // 3, 4)
    splits = (
        Split("train", 0, per_class),
        Split("calibration", per_class, calibration_size),
        Split("test", per_class + calibration_size, test_size),
    )
    started = time.perf_counter()
    with _torch_settings(THREADS), _progress(progress) as bar:
        items = [item for split in splits for item in split.items()]
        pixels = render_inputs(items, seed=seed, nuisance=nuisance, input_size=input_size, bar=bar)
        data, offset = {}, 0
        for split in splits:
            data[split.name] = pixels[offset : offset + split.per_class * NUM_CLASSES]
            offset += split.per_class * NUM_CLASSES
        labels = {split.name: split.labels() for split in splits}

        torch.manual_seed(seed)
        model = LeafNet()
        _fit(
            model,
            data["train"],
            labels["train"],
            epochs=epochs,
            seed=seed,
            bar=bar,
            on_epoch=on_epoch,
        )
        model.eval()
        temperature = fit_temperature(_logits(model, data["calibration"]), labels["calibration"])
        model_path = out_dir / "model.onnx"
        export_onnx(model, model_path, temperature=temperature, input_size=input_size)
        probabilities, _ = _check_export(model_path, model, data["test"], temperature)
        uncalibrated = _softmax(_logits(model, data["test"]))
    seconds = time.perf_counter() - started

    metrics = evaluate(probabilities, labels["test"])
    metrics["ece_before_calibration"] = expected_calibration_error(
        uncalibrated.max(axis=1), uncalibrated.argmax(axis=1) == labels["test"], bins=_ECE_BINS
    )
    metrics["temperature"] = temperature
    card: dict[str, Any] = {
        "name": MODEL_NAME,
        "classes": list(CLASS_NAMES),
        "input_size": input_size,
        "embedding_dim": EMBEDDING_DIM,
        "input": (
            f"image: float32 [N, 3, {input_size}, {input_size}] RGB in [0, 1] from "
            "leafwatch.model.preprocess.decode_image + to_model_input (normalisation is inside "
            f"the graph); outputs probabilities [N, {NUM_CLASSES}] (calibrated) and embedding "
            f"[N, {EMBEDDING_DIM}]"
        ),
        "data": {
            "generator": "leafwatch.model.synth",
            "seed": seed,
            "splits": {
                split.name: {
                    "per_class": split.per_class,
                    "indices": [split.start, split.start + split.per_class],
                    "count": split.per_class * NUM_CLASSES,
                }
                for split in splits
            },
            "nuisance": nuisance.as_dict(),
        },
        "training": {
            "epochs": epochs,
            "batch_size": BATCH_SIZE,
            "lr": LEARNING_RATE,
            "optimizer": f"AdamW(weight_decay={WEIGHT_DECAY}), one-cycle schedule",
            "augmentation": "random horizontal and vertical flips",
            "seconds": round(seconds, 1),
            "threads": THREADS,
            "torch_version": torch.__version__,
        },
        "metrics": metrics,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "onnx_sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
    }
    with _progress(progress) as bar:
        task = bar.add_task("drift reference", total=reference_per_class * NUM_CLASSES, stats="")
        card["reference"] = write_reference(
            out_dir,
            card,
            per_class=reference_per_class,
            advance=lambda count: bar.advance(task, count),
        )
    (out_dir / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def render_inputs(
    items: Sequence[tuple[int, int]],
    *,
    seed: int,
    nuisance: Nuisance,
    input_size: int,
    bar: Progress | None = None,
    workers: int = THREADS,
) -> NDArray[np.uint8]:
    """Render (class_id, index) photos through the serving path, as uint8 [N, 3, S, S]."""
    chunk = 50
    starts = range(0, len(items), chunk)
    jobs = [list(items[start : start + chunk]) for start in starts]
    out = np.empty((len(items), 3, input_size, input_size), dtype=np.uint8)
    task = bar.add_task("rendering leaves", total=len(items), stats="") if bar else None
    arguments = (jobs, [seed] * len(jobs), [nuisance] * len(jobs), [input_size] * len(jobs))
    with contextlib.ExitStack() as stack:
        if workers > 1 and len(jobs) > 1:
            # Rendering is numpy and Pillow at a few ms a photo: processes divide the wait.
            pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
            results: Iterator[NDArray[np.uint8]] = stack.enter_context(pool).map(
                _render_chunk, *arguments
            )
        else:
            results = map(_render_chunk, *arguments)
        for start, result in zip(starts, results, strict=True):
            out[start : start + len(result)] = result
            if bar is not None and task is not None:
                bar.advance(task, len(result))
    return out


def _render_chunk(
    items: list[tuple[int, int]], seed: int, nuisance: Nuisance, input_size: int
) -> NDArray[np.uint8]:
    out = np.empty((len(items), 3, input_size, input_size), dtype=np.uint8)
    for row, (class_id, index) in enumerate(items):
        data = leaf_jpeg(class_id, seed=seed, index=index, nuisance=nuisance)
        decoded = decode_image(data, **_DECODE_LIMITS)
        # to_model_input is k * float32(1 / 255), so uint8 storage is exact and 4x smaller.
        x = to_model_input(decoded.image, input_size)[0]
        out[row] = np.rint(x * 255.0).astype(np.uint8)
    return out


def as_model_input(pixels: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Turn stored uint8 pixels back into the float32 [0, 1] input to_model_input returns."""
    return pixels.astype(np.float32) * np.float32(1.0 / 255.0)


class LeafNet(nn.Module):
    """A small CNN returning (logits, embedding); it normalises its [0, 1] input itself."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 96, 128)) -> None:
        super().__init__()
        # Rough per-channel statistics of generated leaves: inside the graph, so serving only
        # ever feeds [0, 1] pixels.
        self.register_buffer("mean", torch.tensor([0.33, 0.45, 0.20]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.14, 0.14, 0.10]).view(1, 3, 1, 1))
        layers: list[nn.Module] = []
        channels = 3
        for position, width in enumerate(widths):
            if position:
                layers.append(nn.MaxPool2d(2))
            # The stem strides: full-resolution feature maps would cost most of the training
            # time, and a stride-2 3x3 kernel still sees every pixel, tiny specks included.
            layers += [
                nn.Conv2d(channels, width, 3, stride=1 if position else 2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        # Max pooling finds a few lesions on a large leaf; average pooling measures their density.
        self.embed = nn.Sequential(nn.Linear(2 * channels, EMBEDDING_DIM), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(EMBEDDING_DIM, NUM_CLASSES)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (logits, embedding) for a batch of [0, 1] RGB images."""
        features = self.features((image - self.mean) / self.std)
        pooled = torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1)
        embedding = self.embed(pooled)
        return self.head(self.dropout(embedding)), embedding


class _Serving(nn.Module):
    """What ships: calibrated probabilities (temperature folded in) and the embedding."""

    def __init__(self, net: LeafNet, temperature: float) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("inverse_temperature", torch.tensor(1.0 / temperature))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, embedding = self.net(image)
        return torch.softmax(logits * self.inverse_temperature, dim=1), embedding


def _fit(
    model: LeafNet,
    pixels: NDArray[np.uint8],
    labels: NDArray[np.int64],
    *,
    epochs: int,
    seed: int,
    bar: Progress,
    on_epoch: EpochCallback | None = None,
) -> None:
    generator = torch.Generator().manual_seed(seed)
    images, targets = torch.from_numpy(pixels), torch.from_numpy(labels)
    batches = math.ceil(len(targets) / BATCH_SIZE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=LEARNING_RATE, total_steps=max(epochs * batches, 1), pct_start=0.2
    )
    for epoch in range(epochs):
        model.train()
        task = bar.add_task(f"epoch {epoch + 1}/{epochs}", total=batches, stats="")
        order = torch.randperm(len(targets), generator=generator)
        loss_sum, hits, seen = 0.0, 0, 0
        learning_rate = float(optimizer.param_groups[0]["lr"])
        for start in range(0, len(targets), BATCH_SIZE):
            index = order[start : start + BATCH_SIZE]
            x = _flips(_to_float(images[index]), generator)
            y = targets[index]
            logits, _ = model(x)
            loss = nn.functional.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            learning_rate = float(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.step()
            loss_sum += float(loss.detach()) * len(y)
            hits += int((logits.argmax(dim=1) == y).sum())
            seen += len(y)
            bar.update(task, advance=1, stats=f"loss {loss_sum / seen:.3f}  acc {hits / seen:.3f}")
        if on_epoch is not None:
            figures = {
                "train_loss": loss_sum / max(seen, 1),
                "train_accuracy": hits / max(seen, 1),
                "learning_rate": learning_rate,
            }
            on_epoch(epoch + 1, figures)


def _to_float(pixels: torch.Tensor) -> torch.Tensor:
    # The same float32 product as to_model_input: k * float32(1 / 255).
    return pixels.float() * torch.tensor(1.0 / 255.0, dtype=torch.float32)


def _flips(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror images at random: a mirrored leaf is still a leaf of the same class."""
    flip = torch.rand(2, len(x), 1, 1, 1, generator=generator) < 0.5
    x = torch.where(flip[0], x.flip(3), x)
    return torch.where(flip[1], x.flip(2), x)


def _logits(model: LeafNet, pixels: NDArray[np.uint8]) -> NDArray[np.float64]:
    model.eval()
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(pixels), 256):
            logits, _ = model(_to_float(torch.from_numpy(pixels[start : start + 256])))
            chunks.append(logits.double().numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, NUM_CLASSES))


def _softmax(logits: NDArray[np.float64]) -> NDArray[np.float64]:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True), dtype=np.float64)


def _nll(logits: NDArray[np.float64], labels: NDArray[np.int64], temperature: float) -> float:
    scaled = logits / temperature
    top = scaled.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(scaled - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(log_norm - scaled[np.arange(len(labels)), labels]))


def fit_temperature(logits: NDArray[np.float64], labels: NDArray[np.int64]) -> float:
    """Return the temperature that minimises the NLL of softmax(logits / T) on held-out data."""
    # NLL is convex in 1/T, so a golden-section search over 1/T finds the optimum.
    low, high = 0.02, 20.0
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        if _nll(logits, labels, 1 / a) < _nll(logits, labels, 1 / b):
            high = b
        else:
            low = a
    return 1.0 / ((low + high) / 2)


def export_onnx(model: LeafNet, path: Path, *, temperature: float, input_size: int) -> None:
    """Write the calibrated serving graph (image -> probabilities, embedding) to path."""
    serving = _Serving(model, temperature).eval()
    example = torch.rand(2, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    # The exporter's notices (optional torchvision ops, its internals) are not failures.
    exporter_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                serving,
                (example,),
                input_names=["image"],
                output_names=["probabilities", "embedding"],
                opset_version=18,
                dynamo=True,
                dynamic_shapes={"image": {0: torch.export.Dim("batch", min=1, max=65536)}},
                verbose=False,
            )
    finally:
        exporter_log.setLevel(level)
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    program.save(str(path), external_data=False)
    _strip_debug_metadata(path)


def _strip_debug_metadata(path: Path) -> None:
    """Drop the exporter's per-node debug notes: they name the calling module and source lines,
    so the same model exported from `python -m` and from the CLI would differ byte for byte."""
    import onnx

    proto = onnx.load(str(path))
    graph = proto.graph
    for item in (*graph.node, *graph.input, *graph.output, *graph.value_info, *graph.initializer):
        del item.metadata_props[:]
    onnx.save(proto, str(path))


def _check_export(
    path: Path, model: LeafNet, pixels: NDArray[np.uint8], temperature: float
) -> tuple[NDArray[np.float64], NDArray[np.float32]]:
    """Run the ONNX model on pixels, check it agrees with torch, and return its outputs."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probabilities, embeddings = [], []
    for start in range(0, len(pixels), 256):
        p, e = session.run(None, {"image": as_model_input(pixels[start : start + 256])})
        probabilities.append(p)
        embeddings.append(e)
    onnx_p = np.concatenate(probabilities).astype(np.float64)
    reference = _softmax(_logits(model, pixels) / temperature)
    gap = float(np.abs(onnx_p - reference).max()) if len(reference) else 0.0
    if gap > 1e-4:
        raise RuntimeError(f"the ONNX model disagrees with torch by {gap:.2e} in probability")
    return onnx_p, np.concatenate(embeddings)


def evaluate(probabilities: NDArray[np.float64], labels: NDArray[np.int64]) -> dict[str, Any]:
    """Held-out accuracy, per-class recall, confusion matrix and ECE of calibrated outputs."""
    predicted = probabilities.argmax(axis=1)
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    totals = confusion.sum(axis=1)
    return {
        "heldout_accuracy": float((predicted == labels).mean()),
        "per_class_recall": {
            name: float(confusion[k, k] / totals[k]) if totals[k] else 0.0
            for k, name in enumerate(CLASS_NAMES)
        },
        "confusion_matrix": confusion.tolist(),
        "ece": expected_calibration_error(
            probabilities.max(axis=1), predicted == labels, bins=_ECE_BINS
        ),
        "heldout_size": len(labels),
    }


@contextlib.contextmanager
def _torch_settings(threads: int) -> Iterator[None]:
    """Fixed threads, deterministic kernels and a private RNG; the caller's settings after."""
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_deterministic)


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[stats]}"),
        disable=not enabled,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Train with the defaults (or given options) into OUT_DIR and print the metrics."""
    parser = argparse.ArgumentParser(prog="python -m leafwatch.model.train", description=__doc__)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--per-class", type=int, default=DEFAULT_PER_CLASS)
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--input-size", type=int, default=DEFAULT_INPUT_SIZE)
    args = parser.parse_args(argv)
    card = train_model(
        args.out_dir,
        seed=args.seed,
        per_class=args.per_class,
        epochs=args.epochs,
        input_size=args.input_size,
    )
    metrics = {key: value for key, value in card["metrics"].items() if key != "confusion_matrix"}
    print(json.dumps({"seconds": card["training"]["seconds"], **metrics}, indent=2))


if __name__ == "__main__":
    main()
