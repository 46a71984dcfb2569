"""Benchmark: one drift run at production size, and Evidently's drift preset on the same columns.

A reference of 50,000 and a current window of 10,000 predictions are resampled from the bundled
model's reference (2,100 rendered leaves) with a little jitter, since rendering that many leaves
would take an hour; the current window then gets known shifts in a few columns. The script times
the service's whole drift comparison (13 image features and entropy, the class mix, confidence, the
32-dimensional embeddings) and its feature tests alone, then Evidently's DataDriftPreset on the same
14 tabular columns, interleaved in rounds, and compares the columns each flags.

    .venv/bin/python benchmarks/drift_speed.py [--reference 50000] [--current 10000]
        [--repeats 7] [--quick]

Needs the `bench` extra (Evidently): .venv/bin/pip install -e '.[bench]'
"""

import argparse
import datetime
import os
import platform
import statistics
import time
import warnings
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np

from leafwatch.model.registry import bundled_model
from leafwatch.monitor.drift import FAMILIES, TESTED_FEATURES, compare
from leafwatch.monitor.reference import FeatureSample
from leafwatch.monitor.statistics import feature_drift

# The service's defaults (Settings.drift_alpha, Settings.drift_min_samples).
ALPHA = 0.05
MIN_SAMPLES = 200
# Jitter as a share of each column's standard deviation: enough to make resampled rows distinct,
# too little to change any distribution the tests could see.
JITTER = 0.05
# Facts of the camera take a few exact values; jitter would turn them into continuous ones.
CAMERA = ("width", "height", "aspect_ratio")
BOUNDED = {"confidence": (0.0, 1.0), "entropy": (0.0, None), "leaf_green_share": (0.0, 1.0)}
CHANNELS = ("brightness_mean", "red_mean", "green_mean", "blue_mean")


@dataclass(frozen=True)
class Scenario:
    """A known shift of the current window: darker photos, blur, a share from a new camera."""

    name: str
    darker: float  # factor on brightness and the channel means
    sharper: float  # factor on sharpness (below 1: blur)
    new_camera: float  # share of photos at 1280x720

    def shifted(self) -> list[str]:
        """The columns this scenario moves."""
        columns = []
        if self.darker != 1.0:
            columns += CHANNELS
        if self.sharper != 1.0:
            columns.append("sharpness")
        if self.new_camera:
            columns += CAMERA
        return columns

    def describe(self) -> str:
        """The shift in words, for the table."""
        return (
            f"channel means x{self.darker}, sharpness x{self.sharper}, "
            f"{self.new_camera:.0%} of photos at 1280x720"
        )


SCENARIOS = (
    # Well above Evidently's thresholds (0.1 normed Wasserstein, 0.1 Jensen-Shannon distance):
    # about 0.4 standard deviations on the channel means, 0.3 on sharpness.
    Scenario("clear", darker=0.93, sharper=0.75, new_camera=0.2),
    # Below them (about 0.07 and 0.04 standard deviations, 2% from a new camera), but within
    # reach of KS tests on 50,000 against 10,000 values.
    Scenario("subtle", darker=0.99, sharper=0.97, new_camera=0.02),
)


def resample(sample: FeatureSample, size: int, rng: np.random.Generator) -> FeatureSample:
    """`size` rows drawn with replacement from `sample`, continuous columns jittered."""
    rows = rng.integers(len(sample), size=size)
    values = {}
    for name, column in sample.values.items():
        picked = column[rows]
        if name not in CAMERA:
            picked = picked + rng.normal(0.0, JITTER * column.std(), size)
        low, high = BOUNDED.get(name, (None, None))
        values[name] = np.clip(picked, low, high) if low is not None else picked
    embeddings = sample.embeddings[rows] + rng.normal(
        0.0, JITTER * sample.embeddings.std(axis=0), (size, sample.embeddings.shape[1])
    ).astype(np.float32)
    return FeatureSample(
        values=values,
        classes=sample.classes[rows],
        formats=sample.formats[rows],
        embeddings=embeddings,
    )


def shift(sample: FeatureSample, scenario: Scenario, rng: np.random.Generator) -> FeatureSample:
    """A copy of `sample` with the scenario's shifts applied."""
    values = dict(sample.values)
    for name in CHANNELS:
        values[name] = values[name] * scenario.darker
    values["sharpness"] = values["sharpness"] * scenario.sharper
    phone = rng.random(len(sample)) < scenario.new_camera
    for name, value in zip(CAMERA, (1280.0, 720.0, 1280 / 720), strict=True):
        values[name] = np.where(phone, value, values[name])
    return FeatureSample(values, sample.classes, sample.formats, sample.embeddings)


def leafwatch_flags(reference: FeatureSample, current: FeatureSample) -> dict[str, dict[str, Any]]:
    """The service's verdict per tested column, from a whole drift run."""
    comparison = compare(
        reference, current, alpha=ALPHA, min_samples=MIN_SAMPLES, rng=np.random.default_rng(0)
    )
    return {
        feature.name: {
            "drifted": feature.drifted,
            "detail": f"KS {feature.ks_statistic:.3f}, adj. p {feature.adjusted_p_value:.1g}",
        }
        for feature in comparison.features
    }


def time_leafwatch(reference: FeatureSample, current: FeatureSample) -> tuple[float, float]:
    """Seconds of one whole drift run and of its feature tests alone."""
    started = time.perf_counter()
    compare(reference, current, alpha=ALPHA, min_samples=MIN_SAMPLES, rng=np.random.default_rng(0))
    whole = time.perf_counter() - started
    started = time.perf_counter()
    feature_drift(
        {name: reference.values[name] for name in TESTED_FEATURES},
        {name: current.values[name] for name in TESTED_FEATURES},
        alpha=ALPHA / FAMILIES,
        min_samples=MIN_SAMPLES,
    )
    return whole, time.perf_counter() - started


class Evidently:
    """Evidently's DataDriftPreset over the tested columns of two samples."""

    def __init__(self, reference: FeatureSample, current: FeatureSample) -> None:
        os.environ.setdefault("DO_NOT_TRACK", "1")  # no usage reporting from a benchmark
        import pandas as pd

        self.reference = pd.DataFrame({n: reference.values[n] for n in TESTED_FEATURES})
        self.current = pd.DataFrame({n: current.values[n] for n in TESTED_FEATURES})

    def run(self, method: str | None = None) -> dict[str, dict[str, Any]]:
        """Run the preset (its default tests, or `method` on every column); verdict per column."""
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        definition = DataDefinition(numerical_columns=list(TESTED_FEATURES))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas deprecations inside Evidently
            snapshot = Report([DataDriftPreset(method=method)], include_tests=True).run(
                reference_data=Dataset.from_pandas(self.reference, data_definition=definition),
                current_data=Dataset.from_pandas(self.current, data_definition=definition),
            )
        report = snapshot.dict()
        # Scores are in the metrics, Evidently's own drifted / not drifted verdicts in the tests.
        scores = {m["config"]["column"]: m for m in report["metrics"] if "column" in m["config"]}
        verdicts = {}
        for test in report["tests"]:
            column = test["metric_config"]["params"].get("column")
            if column is not None:
                config = scores[column]["config"]
                verdicts[column] = {
                    "drifted": test["status"] == "FAIL",
                    "detail": f"{config['method']} {scores[column]['value']:.2g} "
                    f"(threshold {config['threshold']})",
                }
        return verdicts


def median_spread(values: list[float]) -> str:
    """Median with the range, in milliseconds."""
    return (
        f"{1000 * statistics.median(values):.0f} ms "
        f"({1000 * min(values):.0f} to {1000 * max(values):.0f})"
    )


def flagged(verdicts: dict[str, dict[str, Any]]) -> set[str]:
    """Columns judged drifted."""
    return {name for name, verdict in verdicts.items() if verdict["drifted"]}


def names(columns: set[str] | list[str]) -> str:
    """Columns in the tested order, for a table cell."""
    ordered = [name for name in TESTED_FEATURES if name in columns]
    return ", ".join(ordered) if ordered else "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=int, default=50_000, help="reference predictions")
    parser.add_argument("--current", type=int, default=10_000, help="current predictions")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds")
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats

    model_path, _ = bundled_model()
    bundled = FeatureSample.load(model_path.with_name("reference.npz"))
    rng = np.random.default_rng(2026)
    reference = resample(bundled, args.reference, rng)
    base = resample(bundled, args.current, rng)
    currents = {s.name: shift(base, s, np.random.default_rng(7)) for s in SCENARIOS}
    current = currents[SCENARIOS[0].name]

    evidently = Evidently(reference, current)
    evidently.run()  # warm-up: imports, registries, first-call caches
    time_leafwatch(reference, current)
    whole: list[float] = []
    features: list[float] = []
    preset: list[float] = []
    ratios: list[float] = []
    for _ in range(repeats):
        run_whole, run_features = time_leafwatch(reference, current)
        started = time.perf_counter()
        evidently.run()
        run_preset = time.perf_counter() - started
        whole.append(run_whole)
        features.append(run_features)
        preset.append(run_preset)
        ratios.append(run_preset / run_features)

    versions = {
        package: metadata.version(package) for package in ("evidently", "pandas", "scipy", "numpy")
    }
    print(
        f"Run on {datetime.date.today().isoformat()}, Python {platform.python_version()}, "
        + ", ".join(f"{package} {version}" for package, version in versions.items())
        + f"; {args.reference:,} reference against {args.current:,} current predictions, "
        f"{repeats} rounds, median (range):"
    )
    print()
    print("| what | columns | time | Evidently / this |")
    print("|---|---|---:|---:|")
    print(
        f"| LeafWatch, whole drift run | 14 features, classes, confidence, embedding "
        f"| {median_spread(whole)} | |"
    )
    print(
        f"| LeafWatch, feature tests (KS, BH, PSI) | 14 features | {median_spread(features)} "
        f"| {statistics.median(ratios):.0f}x ({min(ratios):.0f}x to {max(ratios):.0f}x) |"
    )
    print(f"| Evidently DataDriftPreset | 14 features | {median_spread(preset)} | |")

    for scenario in SCENARIOS:
        scenario_current = currents[scenario.name]
        ours = leafwatch_flags(reference, scenario_current)
        comparison = Evidently(reference, scenario_current)
        theirs = comparison.run()
        theirs_ks = comparison.run(method="ks")
        print()
        print(f"Scenario {scenario.name}: {scenario.describe()}.")
        print(f"Shifted: {names(scenario.shifted())}.")
        print(f"LeafWatch flags: {names(flagged(ours))}.")
        print(f"Evidently preset flags: {names(flagged(theirs))}.")
        print(f"Evidently preset with KS on every column flags: {names(flagged(theirs_ks))}.")
        same = flagged(ours) == flagged(theirs)
        print(
            f"LeafWatch and the Evidently preset flag the same columns: {'yes' if same else 'no'}."
        )
        print()
        print("| column | shifted | LeafWatch | Evidently preset | Evidently, KS |")
        print("|---|---|---|---|---|")
        for name in TESTED_FEATURES:
            cells = [
                f"{'**drift**' if v[name]['drifted'] else 'no'}: {v[name]['detail']}"
                for v in (ours, theirs, theirs_ks)
            ]
            moved = "yes" if name in scenario.shifted() else ""
            print(f"| {name} | {moved} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
