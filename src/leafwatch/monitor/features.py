"""Cheap features of each prediction, computed once when it is made: drift never re-reads images."""

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from leafwatch.model.classifier import ClassifierOutput

# Continuous features, in storage order. Image statistics come from the model's input (the decoded
# photo at the model's scale, RGB in [0, 1]); the file's facts from the upload itself.
IMAGE_FEATURES = (
    "brightness_mean",
    "brightness_std",
    "red_mean",
    "green_mean",
    "blue_mean",
    "saturation_mean",
    "leaf_green_share",
    "sharpness",
    "contrast",
    "width",
    "height",
    "aspect_ratio",
    "file_size_kb",
)
MODEL_FEATURES = ("confidence", "entropy")
FEATURES = IMAGE_FEATURES + MODEL_FEATURES
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP")

# ITU-R BT.601 luma weights, as Pillow's "L" conversion uses.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# A pixel counts as leaf-green when green is its strongest channel and it has some colour and light.
_GREEN_MIN_SATURATION = 0.15
_GREEN_MIN_VALUE = 0.1


@dataclass(frozen=True, slots=True)
class PredictionFeatures:
    """What drift detection knows about one prediction."""

    values: dict[str, float]
    image_format: str
    predicted_class: int
    embedding: NDArray[np.float32]


def compute_features(
    model_input: NDArray[np.float32],
    output: ClassifierOutput,
    *,
    width: int,
    height: int,
    size_bytes: int,
    image_format: str,
) -> PredictionFeatures:
    """Features of one prediction from the model's input [1, 3, S, S] and its output."""
    rgb = model_input[0]
    red, green, blue = rgb[0], rgb[1], rgb[2]
    luma = np.tensordot(_LUMA, rgb, axes=1)
    high = rgb.max(axis=0)
    low = rgb.min(axis=0)
    saturation = np.divide(high - low, high, out=np.zeros_like(high), where=high > 0)
    green_pixels = ((green >= red) & (green >= blue) & (saturation > _GREEN_MIN_SATURATION)) & (
        high > _GREEN_MIN_VALUE
    )
    low_luma, high_luma = np.percentile(luma, [5.0, 95.0])
    probabilities = np.clip(output.probabilities.astype(np.float64), 1e-12, 1.0)
    values = {
        "brightness_mean": float(luma.mean()),
        "brightness_std": float(luma.std()),
        "red_mean": float(red.mean()),
        "green_mean": float(green.mean()),
        "blue_mean": float(blue.mean()),
        "saturation_mean": float(saturation.mean()),
        "leaf_green_share": float(green_pixels.mean()),
        "sharpness": laplacian_variance(luma),
        "contrast": float(high_luma - low_luma),
        "width": float(width),
        "height": float(height),
        "aspect_ratio": width / height,
        "file_size_kb": size_bytes / 1024.0,
        "confidence": output.confidence,
        "entropy": float(-(probabilities * np.log(probabilities)).sum()),
    }
    return PredictionFeatures(
        values=values,
        image_format=image_format,
        predicted_class=output.class_id,
        embedding=np.asarray(output.embedding, dtype=np.float32),
    )


def laplacian_variance(luma: NDArray[np.float32]) -> float:
    """Variance of the 4-neighbour Laplacian of a [0, 1] image, in 8-bit units: blur lowers it."""
    image = luma * np.float32(255.0)
    laplacian = (
        image[:-2, 1:-1] + image[2:, 1:-1] + image[1:-1, :-2] + image[1:-1, 2:]
    ) - 4.0 * image[1:-1, 1:-1]
    return float(laplacian.var())
