"""Benchmark: how closely and how soon the confidence-based estimate tracks the true accuracy.

Traffic comes in phases: clean photos (the model's training conditions), then a known degradation,
darker + blurrier + lower-resolution photos, at rising severity. Every phase photographs the same
new leaves (indices after the model's held-out and reference leaves), rendered, JPEG-encoded,
decoded and classified through the serving path with the bundled model, so the labels are known.

Per phase it reports the true accuracy, the estimate (mean calibrated confidence, what
`leafwatch.monitor.estimation` computes in SQL), their absolute difference (goal: at most 0.03), and
the realized accuracy from a realistic feedback sample (FEEDBACK_RATE of predictions get a verdict)
with its Wilson 95% interval, as the gap metric would see it.

Then how soon each signal moves. Windows of n predictions are drawn (with replacement) from a
phase's pool, TRIALS per size. The estimate has moved when a window's mean confidence lies outside
the clean band: the central 95% of clean windows' means of the same size. Feedback has moved when
a window has MIN_VERDICTS verdicts or more (each prediction gets one with probability
FEEDBACK_RATE) and their Wilson 95% interval excludes the clean accuracy, the test the accuracy
alert makes. The gap is flagged when, likewise, that interval excludes the phase's estimate: the
calibration visibly no longer holds. For each, the smallest n (on a grid of steps of sqrt(2)) at
which POWER of the windows show it; "-" when none does (nothing to see, or beyond the grid). Above
EXACT_UP_TO predictions a window's mean confidence is drawn from its normal approximation (the
central limit theorem), to keep memory flat.

Beside the estimate, an alternative that the issue did not ask for: average thresholded confidence
(ATC; Garg et al. 2022, "Leveraging Unlabeled Data to Predict Out-of-Distribution Performance").
It picks the confidence threshold t at which the share of the bundled reference's labelled leaves
above t equals their accuracy, and estimates a window's accuracy as its share of predictions above
t. It is reported to show whether another confidence-based estimator would meet the goal.

Pools are cached under var/bench/estimation_quality/ (gitignored), keyed by all that shapes them.

    .venv/bin/python benchmarks/estimation_quality.py [--per-class 500] [--quick] [--fresh]
"""

import argparse
import datetime
import hashlib
import json
import platform
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from leafwatch.model.classifier import OnnxClassifier
from leafwatch.model.registry import bundled_model
from leafwatch.model.synth import Nuisance
from leafwatch.monitor.estimation import MIN_VERDICTS
from leafwatch.monitor.reference import FeatureSample, build_reference, reference_items
from leafwatch.monitor.statistics import wilson_interval

CACHE = Path(__file__).resolve().parent.parent / "var" / "bench" / "estimation_quality"
FEEDBACK_RATE = 0.05  # the share of predictions that get a verdict (farmers, experts)
GOAL = 0.03  # the bound on |estimate - true accuracy|
POWER = 0.8  # a signal has "moved" at the n where this share of windows shows it
TRIALS = 400
EXACT_UP_TO = 3200
GRID = tuple(round(25 * 2 ** (k / 2)) for k in range(31))  # 25, 35, 50, 71 ... 819,200
SEVERITIES = (0.1, 0.2, 0.3, 0.35, 0.4, 0.5, 0.6)


@dataclass(frozen=True)
class Phase:
    """One stretch of traffic: its severity and the photographic conditions it has."""

    name: str
    severity: float
    nuisance: Nuisance
    change: str


def degrade(base: Nuisance, severity: float) -> Phase:
    """Darker, blurrier, lower-resolution photos; severity 0 is the base, 1 is unusable."""
    if severity == 0:
        return Phase("clean", 0.0, base, "training conditions")
    dim = 1 - 0.5 * severity
    extra_blur = (2.0 * severity, 2.4 * severity)
    scale = 1 - 0.7 * severity
    nuisance = replace(
        base,
        brightness=(base.brightness[0] * dim, base.brightness[1] * dim),
        blur=(base.blur[0] + extra_blur[0], base.blur[1] + extra_blur[1]),
        resolution=tuple(
            (max(16, round(w * scale)), max(16, round(h * scale))) for w, h in base.resolution
        ),
    )
    shortest = min(min(pair) for pair in nuisance.resolution)
    change = (
        f"light x{dim:.2f}, blur +{extra_blur[0]:.1f}-{extra_blur[1]:.1f} px, "
        f"short side {shortest} px"
    )
    return Phase(f"degraded {severity:g}", severity, nuisance, change)


@dataclass(frozen=True)
class Pool:
    """Predictions of one phase: whether each was right, and its confidence."""

    correct: NDArray[np.bool_]
    confidence: NDArray[np.float64]


def render_pools(
    phases: list[Phase], *, per_class: int, start: int, seed: int, fresh: bool
) -> dict[str, Pool]:
    """Render and classify each phase's leaves, or load them from the cache."""
    model_path, card = bundled_model()
    classifier = OnnxClassifier(model_path, card, version="bench")
    items = reference_items(start, per_class)
    truth = np.array([class_id for class_id, _ in items], dtype=np.int64)
    pools = {}
    columns = (
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as progress:
        for phase in phases:
            recipe = json.dumps(
                [classifier.sha256, seed, start, per_class, phase.nuisance.as_dict()]
            )
            digest = hashlib.sha256(recipe.encode()).hexdigest()[:12]
            path = CACHE / f"{phase.name.replace(' ', '-')}-{digest}.npz"
            task = progress.add_task(phase.name, total=len(items))
            if path.exists() and not fresh:
                with np.load(path) as data:
                    pools[phase.name] = Pool(data["correct"], data["confidence"])
                progress.update(task, completed=len(items), description=f"{phase.name} (cached)")
                continue
            sample = build_reference(
                classifier,
                items,
                seed=seed,
                nuisance=phase.nuisance,
                workers=2,
                advance=partial(progress.advance, task),
            )
            pool = Pool(sample.classes == truth, sample.values["confidence"])
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(path, correct=pool.correct, confidence=pool.confidence)
            pools[phase.name] = pool
    return pools


def window_means(pool: Pool, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """Mean confidence of TRIALS windows of n predictions drawn from the pool."""
    if n <= EXACT_UP_TO:
        rows = rng.integers(len(pool.confidence), size=(TRIALS, n))
        return np.asarray(pool.confidence[rows].mean(axis=1), dtype=np.float64)
    spread = pool.confidence.std(ddof=1) / np.sqrt(n)
    return rng.normal(pool.confidence.mean(), spread, size=TRIALS)


def estimate_moves_at(clean: Pool, pool: Pool, rng: np.random.Generator) -> int | None:
    """Smallest n at which POWER of windows' mean confidence leave the clean band."""
    for n in GRID:
        band = np.percentile(window_means(clean, n, rng), [2.5, 97.5])
        means = window_means(pool, n, rng)
        if np.mean((means < band[0]) | (means > band[1])) >= POWER:
            return n
    return None


def verdicts_exclude_at(value: float, pool: Pool, rng: np.random.Generator) -> int | None:
    """Smallest n at which POWER of windows' verdicts give an interval that excludes `value`.

    A window counts only with MIN_VERDICTS verdicts or more, as the accuracy alerts require.
    """
    accuracy = float(pool.correct.mean())
    for n in GRID:
        verdicts = rng.binomial(n, FEEDBACK_RATE, size=TRIALS)
        right = rng.binomial(verdicts, accuracy)
        moved = 0
        for k, v in zip(right, verdicts, strict=True):
            low, high = wilson_interval(int(k), int(v)) or (0.0, 1.0)
            moved += v >= MIN_VERDICTS and not low <= value <= high
        if moved >= POWER * TRIALS:
            return n
    return None


def atc_threshold() -> float:
    """ATC's threshold from the bundled reference: the share above it equals its accuracy."""
    model_path, card = bundled_model()
    reference = FeatureSample.load(model_path.parent / "reference.npz")
    per_class = int(card["reference"]["per_class"])
    # reference_items lays the leaves out class by class, so the truth is the position.
    truth = np.repeat(np.arange(len(card["classes"])), per_class)
    accuracy = float(np.mean(reference.classes == truth))
    return float(np.quantile(reference.values["confidence"], 1 - accuracy))


def summarise(phases: list[Phase], pools: dict[str, Pool], seed: int) -> list[dict[str, Any]]:
    """Every figure of every phase."""
    clean = pools["clean"]
    threshold = atc_threshold()
    clean_accuracy = float(clean.correct.mean())
    rng = np.random.default_rng(seed)
    rows = []
    for phase in phases:
        pool = pools[phase.name]
        true_accuracy = float(pool.correct.mean())
        estimate = float(pool.confidence.mean())
        reviewed = rng.random(len(pool.correct)) < FEEDBACK_RATE
        right = int(pool.correct[reviewed].sum())
        count = int(reviewed.sum())
        low, high = wilson_interval(right, count) or (0.0, 1.0)
        reviewed_estimate = float(pool.confidence[reviewed].mean()) if count else float("nan")
        rows.append(
            {
                "phase": phase.name,
                "change": phase.change,
                "predictions": len(pool.correct),
                "true_accuracy": true_accuracy,
                "estimated": estimate,
                "error": abs(estimate - true_accuracy),
                "within_goal": abs(estimate - true_accuracy) <= GOAL,
                "atc": float(np.mean(pool.confidence > threshold)),
                "atc_error": abs(float(np.mean(pool.confidence > threshold)) - true_accuracy),
                # Why no confidence-based estimate can follow a strong shift: the wrong answers
                # stay confident.
                "median_confidence_wrong": float(np.median(pool.confidence[~pool.correct]))
                if (~pool.correct).any()
                else None,
                "verdicts": count,
                "realized": right / count if count else float("nan"),
                "realized_wilson_95": [low, high],
                "gap": reviewed_estimate - right / count if count else float("nan"),
                "gap_outside_interval": not low <= reviewed_estimate <= high,
                "estimate_moves_at": None
                if phase.severity == 0
                else estimate_moves_at(clean, pool, rng),
                "feedback_moves_at": None
                if phase.severity == 0
                else verdicts_exclude_at(clean_accuracy, pool, rng),
                # The estimate's own noise is far smaller than the verdicts': its mean stands in.
                "gap_flagged_at": verdicts_exclude_at(estimate, pool, rng),
            }
        )
    return rows


def count(n: int | None, *, verdicts: bool = False) -> str:
    """A prediction count for the table, with the verdicts it brings when asked."""
    if n is None:
        return "-"
    if verdicts:
        return f"{n:,} ({round(n * FEEDBACK_RATE):,} verdicts)"
    return f"{n:,}"


def print_table(rows: list[dict[str, Any]]) -> None:
    """The phases as a markdown table."""
    print(
        "| phase | change from training conditions | true accuracy | estimate | abs. error "
        f"| within {GOAL} | realized ({FEEDBACK_RATE:.0%} verdicts) | Wilson 95% "
        "| gap (est. - realized, same predictions) | estimate moves after | "
        "feedback moves after | gap flagged after |"
    )
    print("|---|---|---:|---:|---:|---|---:|---|---:|---:|---:|---:|")
    for row in rows:
        low, high = row["realized_wilson_95"]
        flag = " (outside)" if row["gap_outside_interval"] else ""
        print(
            f"| {row['phase']} | {row['change']} | {row['true_accuracy']:.3f} | "
            f"{row['estimated']:.3f} | {row['error']:.3f} | "
            f"{'yes' if row['within_goal'] else '**no**'} | "
            f"{row['realized']:.3f} of {row['verdicts']} | {low:.3f} to {high:.3f} | "
            f"{row['gap']:+.3f}{flag} | {count(row['estimate_moves_at'])} | "
            f"{count(row['feedback_moves_at'], verdicts=True)} | "
            f"{count(row['gap_flagged_at'], verdicts=True)} |"
        )


def print_alternative(rows: list[dict[str, Any]]) -> None:
    """The mean-confidence estimate beside ATC's, as a markdown table."""
    print(
        "| phase | true accuracy | mean confidence (shipped) | abs. error | ATC | abs. error "
        "| median confidence of wrong answers |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        wrong = row["median_confidence_wrong"]
        print(
            f"| {row['phase']} | {row['true_accuracy']:.3f} | {row['estimated']:.3f} | "
            f"{row['error']:.3f} | {row['atc']:.3f} | {row['atc_error']:.3f} | "
            f"{'-' if wrong is None else f'{wrong:.3f}'} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=500, help="leaves per class per phase")
    parser.add_argument("--quick", action="store_true", help="60 leaves per class per phase")
    parser.add_argument("--fresh", action="store_true", help="render again, ignoring the cache")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    per_class = 60 if args.quick else args.per_class

    _, card = bundled_model()
    data = card["data"]
    seed = int(data["seed"])
    # New leaves: every index the card's splits and reference used lies below this.
    start = max(
        card["reference"]["indices"][1], *(s["indices"][1] for s in data["splits"].values())
    )
    base = Nuisance.from_dict(data["nuisance"])
    phases = [degrade(base, severity) for severity in (0.0, *SEVERITIES)]
    console = Console(stderr=True)
    console.print(
        f"{len(phases)} phases of {per_class * 7} leaves from index {start}, seed {seed}; "
        f"{FEEDBACK_RATE:.0%} get a verdict; {TRIALS} windows per size"
    )
    started = time.perf_counter()
    pools = render_pools(phases, per_class=per_class, start=start, seed=seed, fresh=args.fresh)
    rendered = time.perf_counter() - started
    rows = summarise(phases, pools, seed)
    console.print(
        f"render and classify: {rendered:.0f} s; the rest: "
        f"{time.perf_counter() - started - rendered:.0f} s"
    )

    print(
        f"Run on {datetime.date.today().isoformat()}, Python {platform.python_version()}, "
        f"{per_class * 7} predictions per phase:"
    )
    print()
    print_table(rows)
    print()
    print(f"An alternative estimator, ATC (threshold {atc_threshold():.3f} from the reference):")
    print()
    print_alternative(rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
