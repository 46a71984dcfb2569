"""Benchmark: how often a drift run flags each photographic change, and how often it flags nothing.

For each condition (the reference's own distribution, darker photos, blur, a new camera, a new
background, more Stage5 and Stage6 leaves, and a milder version of each) a pool of leaves is
rendered once through the serving path (JPEG, decode, the bundled ONNX model, features). Each trial
then draws a window of current predictions from the pool without replacement and runs the service's
drift comparison against the bundled model's reference (2,100 held-out leaves) with the service's
defaults. Trials of one condition share its pool, so they are not fully independent. Pools are
cached under var/bench/drift_quality/ (gitignored), keyed by everything that shapes them.

    .venv/bin/python benchmarks/drift_quality.py [--trials 100] [--window 300] [--quick] [--fresh]
"""

import argparse
import datetime
import hashlib
import json
import math
import platform
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from leafwatch.model.classifier import OnnxClassifier
from leafwatch.model.registry import bundled_model
from leafwatch.model.synth import Nuisance, class_counts
from leafwatch.monitor.drift import Comparison, compare
from leafwatch.monitor.reference import FeatureSample, build_reference

CACHE = Path(__file__).resolve().parent.parent / "var" / "bench" / "drift_quality"
# The service's defaults (Settings.drift_alpha, Settings.drift_min_samples).
ALPHA = 0.05
MIN_SAMPLES = 200
FAMILIES = ("image_statistics", "prediction_distribution", "confidence", "embedding")
# The null pool is larger: its false-alarm rate is the figure most sensitive to pool overlap.
NULL_PER_CLASS = 1000
DRIFT_PER_CLASS = 300
NEW_GROUND = ("sky", "bench")  # backgrounds the model never saw
# Class weights (Healthy, Stage1, ..., Stage6): late stages more common, as in a bad season.
TOWARD_LATE = (1.0, 1.0, 1.0, 1.0, 1.0, 3.0, 3.0)
SLIGHTLY_LATE = (1.0, 1.0, 1.0, 1.0, 1.0, 1.5, 1.5)


@dataclass(frozen=True)
class Condition:
    """One kind of current data: how its photos or its class mix differ from the reference's."""

    name: str
    change: str
    nuisance: Nuisance
    class_weights: tuple[float, ...] | None = None
    drifted: bool = True


def conditions(base: Nuisance) -> list[Condition]:
    """The null condition, then each drift and a milder version of it."""
    phone = ((1280, 720), (720, 1280))  # a 16:9 phone, both orientations
    return [
        Condition("null", "none: new leaves, same nuisance and class mix", base, drifted=False),
        Condition("darker", "brightness (0.85, 1.15) -> (0.5, 0.7)", brightness(base, 0.5, 0.7)),
        Condition("darker, mild", "brightness -> (0.75, 1.05)", brightness(base, 0.75, 1.05)),
        Condition("blur", "blur sigma (0, 0.6) -> (1.5, 2.5) px", replace(base, blur=(1.5, 2.5))),
        Condition("blur, mild", "blur sigma -> (0.6, 1.2) px", replace(base, blur=(0.6, 1.2))),
        Condition("new camera", "all 1280x720 or 720x1280", replace(base, resolution=phone)),
        Condition(
            "new camera, mild",
            "1 photo in 10 at 1280x720",
            # Resolutions are drawn uniformly from the tuple: 9 default entries and 1 new one.
            replace(base, resolution=base.resolution * 3 + phone[:1]),
        ),
        Condition("background", "soil, grass -> sky, bench", replace(base, background=NEW_GROUND)),
        Condition(
            "background, mild",
            "1 photo in 3 on a bench",
            replace(base, background=(*base.background, "bench")),
        ),
        Condition("class prior", "Stage5, Stage6 at 27% each (was 14%)", base, TOWARD_LATE),
        Condition("class prior, mild", "Stage5, Stage6 at 19% each", base, SLIGHTLY_LATE),
    ]


def brightness(base: Nuisance, low: float, high: float) -> Nuisance:
    """The base nuisance with another exposure range."""
    return replace(base, brightness=(low, high))


def pool_items(
    start: int, per_class: int, weights: tuple[float, ...] | None
) -> list[tuple[int, int]]:
    """(class_id, index) pairs: per_class * 7 leaves split by the weights, indices from start."""
    counts = class_counts(per_class, weights)
    return [(class_id, start + i) for class_id, count in enumerate(counts) for i in range(count)]


def cache_path(condition: Condition, items: list[tuple[int, int]], seed: int, model: str) -> Path:
    """Where a pool is cached: the name plus a hash of everything that shapes its features."""
    counts = sorted(Counter(class_id for class_id, _ in items).items())
    recipe = json.dumps([model, seed, condition.nuisance.as_dict(), items[0], counts])
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    return CACHE / f"{condition.name.replace(', ', '-').replace(' ', '_')}-{digest}.npz"


def subset(sample: FeatureSample, rows: np.ndarray) -> FeatureSample:
    """The given rows of a sample."""
    return FeatureSample(
        values={name: column[rows] for name, column in sample.values.items()},
        classes=sample.classes[rows],
        formats=sample.formats[rows],
        embeddings=sample.embeddings[rows],
    )


def wilson(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95% interval for a binomial share."""
    if trials == 0:
        return 0.0, 1.0
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = (
        z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials**2)) / (1 + z * z / trials)
    )
    return max(0.0, centre - half), min(1.0, centre + half)


def fired(comparison: Comparison) -> dict[str, bool]:
    """Which of the four test families flagged drift."""
    return {
        "image_statistics": any(feature.drifted for feature in comparison.features),
        "prediction_distribution": comparison.classes.drifted,
        "confidence": comparison.confidence.drifted,
        "embedding": comparison.embedding.drifted,
    }


def effects(comparison: Comparison) -> dict[str, float]:
    """Each family's effect size whether or not its test flagged (the score before gating)."""
    ks = [f.ks_statistic for f in comparison.features if f.ks_statistic is not None]
    return {
        "image_statistics": max(ks, default=0.0),  # the largest KS statistic
        "prediction_distribution": comparison.classes.total_variation or 0.0,
        "confidence": comparison.confidence.statistic or 0.0,
        "embedding": comparison.embedding.energy_coefficient or 0.0,
    }


def run_trials(
    reference: FeatureSample,
    pool: FeatureSample,
    *,
    trials: int,
    window: int,
    seed: int,
    advance: Callable[[], None],
) -> dict[str, Any]:
    """Draw `trials` windows from the pool, compare each with the reference, and summarise."""
    draw = np.random.default_rng(seed)
    detected = 0
    family_counts: Counter[str] = Counter()
    feature_counts: Counter[str] = Counter()
    directions: dict[str, Counter[str]] = {}
    scores: dict[str, list[float]] = {family: [] for family in FAMILIES}
    raw: dict[str, list[float]] = {family: [] for family in FAMILIES}
    seconds = []
    for trial in range(trials):
        rows = draw.choice(len(pool), size=window, replace=False)
        started = time.perf_counter()
        comparison = compare(
            reference,
            subset(pool, rows),
            alpha=ALPHA,
            min_samples=MIN_SAMPLES,
            rng=np.random.default_rng([seed, trial]),
        )
        seconds.append(time.perf_counter() - started)
        detected += comparison.drifted
        family_counts.update(name for name, flag in fired(comparison).items() if flag)
        for feature in comparison.features:
            if feature.drifted:
                feature_counts[feature.name] += 1
                directions.setdefault(feature.name, Counter())[feature.direction or "?"] += 1
        for family, value in comparison.scores.by_metric_type().items():
            scores[family].append(value or 0.0)
        for family, value in effects(comparison).items():
            raw[family].append(value)
        advance()
    low, high = wilson(detected, trials)
    return {
        "pool": len(pool),
        "trials": trials,
        "window": window,
        "detected": detected,
        "rate": detected / trials,
        "wilson_95": [low, high],
        "families": {family: family_counts[family] / trials for family in FAMILIES},
        "mean_scores": {family: float(np.mean(values)) for family, values in scores.items()},
        "effect_median": {family: float(np.median(values)) for family, values in raw.items()},
        "effect_p95": {family: float(np.percentile(values, 95)) for family, values in raw.items()},
        "features": {
            name: {"rate": count / trials, "direction": directions[name].most_common(1)[0][0]}
            for name, count in feature_counts.most_common()
        },
        "seconds_per_trial": float(np.median(seconds)),
    }


def render_pools(
    chosen: list[Condition], *, start: int, seed: int, quick: bool, fresh: bool
) -> dict[str, FeatureSample]:
    """Render (or load from the cache) the pool of each condition."""
    model_path, card = bundled_model()
    classifier = OnnxClassifier(model_path, card, version="bench")
    plans = []
    for condition in chosen:
        per_class = NULL_PER_CLASS if not condition.drifted else DRIFT_PER_CLASS
        if quick:
            per_class //= 4
        items = pool_items(start, per_class, condition.class_weights)
        plans.append((condition, items, cache_path(condition, items, seed, classifier.sha256)))
    pools = {}
    columns = (
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as progress:
        for condition, items, path in plans:
            task = progress.add_task(condition.name, total=len(items))
            if path.exists() and not fresh:
                pools[condition.name] = FeatureSample.load(path)
                progress.update(
                    task, completed=len(items), description=f"{condition.name} (cached)"
                )
                continue
            pools[condition.name] = build_reference(
                classifier,
                items,
                seed=seed,
                nuisance=condition.nuisance,
                workers=2,
                advance=lambda n, task=task: progress.advance(task, n),
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            pools[condition.name].save(path)
    return pools


def percent(share: float) -> str:
    """A share as a whole percentage."""
    return f"{100 * share:.0f}%"


def print_tables(chosen: list[Condition], results: dict[str, dict[str, Any]], window: int) -> None:
    """Markdown tables: detection per condition, then effect sizes against the null's."""
    print(
        "| condition | change from the reference | pool | detected | Wilson 95% | features | "
        "classes | confidence | embedding | mean scores: img / cls / conf / emb | "
        "features flagged most (share of trials) |"
    )
    print("|---|---|---:|---:|---|---:|---:|---:|---:|---|---|")
    for condition in chosen:
        for key, result in results.items():
            if key.rsplit("@", 1)[0] != condition.name:
                continue
            low, high = result["wilson_95"]
            families = " | ".join(percent(result["families"][f]) for f in FAMILIES)
            mean = " / ".join(f"{result['mean_scores'][f]:.3f}" for f in FAMILIES)
            top = ", ".join(
                f"{name} {info['direction']} {percent(info['rate'])}"
                for name, info in list(result["features"].items())[:3]
            )
            name = condition.name
            if result["window"] != window:
                name += f" ({result['window']} current)"
            print(
                f"| {name} | {condition.change} | {result['pool']} | "
                f"{result['detected']}/{result['trials']} ({percent(result['rate'])}) | "
                f"{percent(low)} to {percent(high)} | {families} | {mean} | {top or '-'} |"
            )
    print()
    print("Effect sizes before gating: median over trials, and the null's 95th percentile:")
    print()
    print(
        "| condition | current | largest feature KS | class mix TV | confidence KS | embedding H |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for key, result in results.items():
        name = key.rsplit("@", 1)[0]
        rows = [("effect_median", name)]
        if name == "null":
            rows.append(("effect_p95", "null, 95th percentile"))
        for statistic, label in rows:
            values = " | ".join(f"{result[statistic][f]:.3f}" for f in FAMILIES)
            print(f"| {label} | {result['window']} | {values} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100, help="trials per condition")
    parser.add_argument("--window", type=int, default=300, help="current predictions per trial")
    parser.add_argument(
        "--null-windows",
        type=int,
        nargs="*",
        default=[1000],
        help="extra window sizes for the null condition (production-sized windows)",
    )
    parser.add_argument("--quick", action="store_true", help="small pools and 20 trials")
    parser.add_argument(
        "--fresh", action="store_true", help="render pools again, ignoring the cache"
    )
    parser.add_argument("--only", nargs="*", help="condition names to run (default: all)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    trials = 20 if args.quick else args.trials

    model_path, card = bundled_model()
    reference = FeatureSample.load(model_path.with_name("reference.npz"))
    data = card["data"]
    seed = int(data["seed"])
    # New leaves: every index the card's splits and reference used lies below this.
    start = max(
        card["reference"]["indices"][1], *(s["indices"][1] for s in data["splits"].values())
    )
    chosen = [
        condition
        for condition in conditions(Nuisance.from_dict(data["nuisance"]))
        if not args.only or condition.name in args.only
    ]

    console = Console(stderr=True)
    console.print(
        f"reference: {len(reference)} predictions; pools from leaf index {start}, seed {seed}; "
        f"{trials} trials of {args.window} current predictions; alpha {ALPHA}, "
        f"min_samples {MIN_SAMPLES}"
    )
    started = time.perf_counter()
    pools = render_pools(chosen, start=start, seed=seed, quick=args.quick, fresh=args.fresh)
    render_seconds = time.perf_counter() - started

    runs = []
    for condition in chosen:
        windows = [args.window]
        if not condition.drifted:
            windows += [w for w in args.null_windows if w <= len(pools[condition.name])]
        runs += [(condition, window) for window in windows]
    results: dict[str, dict[str, Any]] = {}
    columns = (
        TextColumn("{task.description:<32}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        for index, (condition, window) in enumerate(runs):
            task = progress.add_task(f"{condition.name}, window {window}", total=trials)
            results[f"{condition.name}@{window}"] = run_trials(
                reference,
                pools[condition.name],
                trials=trials,
                window=window,
                seed=1000 + index,
                advance=lambda task=task: progress.advance(task),
            )

    console.print(
        f"pools: {render_seconds:.0f} s; trials: "
        f"{np.median([r['seconds_per_trial'] for r in results.values()]):.3f} s each (median)"
    )
    print(f"Run on {datetime.date.today().isoformat()}, {platform.python_version()}:")
    print()
    print_tables(chosen, results, args.window)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
