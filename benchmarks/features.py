"""Benchmark: what computing drift features adds to a prediction (goal: a few milliseconds).

Times, in one run and on the same photos, decode + preprocess + inference and then the feature
computation, for a small and a 12 MP leaf photo; reports medians and the share features add.

    .venv/bin/python benchmarks/features.py [--repeats 200]
"""

import argparse
import statistics
import time

from leafwatch.model.classifier import OnnxClassifier
from leafwatch.model.preprocess import decode_image
from leafwatch.model.registry import bundled_model
from leafwatch.model.synth import Nuisance, leaf_jpeg
from leafwatch.monitor.features import compute_features

LIMITS = {"max_bytes": 10**8, "max_pixels": 10**9}


def measure(data: bytes, classifier: OnnxClassifier, repeats: int) -> tuple[float, float]:
    """Median milliseconds of (decode + preprocess + inference) and of the features."""
    model_ms, feature_ms = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        decoded = decode_image(data, **LIMITS)
        batch = classifier.prepare(decoded.image)
        output = classifier.run(batch)
        middle = time.perf_counter()
        compute_features(
            batch,
            output,
            width=decoded.width,
            height=decoded.height,
            size_bytes=len(data),
            image_format=decoded.format,
        )
        ended = time.perf_counter()
        model_ms.append((middle - started) * 1000)
        feature_ms.append((ended - middle) * 1000)
    return statistics.median(model_ms), statistics.median(feature_ms)


def main() -> None:
    """Print a table of the two costs per photo size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    repeats = parser.parse_args().repeats
    path, card = bundled_model()
    classifier = OnnxClassifier(path, card, version="bench", threads=1)
    print("| photo | decode + inference (ms) | features (ms) | features / prediction |")
    print("|---|---:|---:|---:|")
    for width, height in ((320, 240), (4000, 3000)):
        nuisance = Nuisance(resolution=((width, height),), jpeg_quality=(90, 90))
        data = leaf_jpeg(4, seed=2024, index=0, nuisance=nuisance)
        measure(data, classifier, 5)  # warm-up
        model, features = measure(data, classifier, repeats)
        print(f"| {width}x{height} | {model:.2f} | {features:.2f} | {features / model:.1%} |")


if __name__ == "__main__":
    main()
