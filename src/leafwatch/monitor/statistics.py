"""Two-sample tests and effect sizes for data drift: pure functions over numpy arrays.

Each test compares a reference window (the data the model was validated on) with a current window
and returns a frozen result: a p-value, an effect size in [0, 1] and a `drifted` flag, or, below
`min_samples`, "not enough data" (p-value None). `drift_scores` turns the results into the four
`data_drift_score` values. docs/drift.md explains each choice; nothing here reads a database or
keeps state, and randomness comes in as a `numpy.random.Generator`.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

# scipy ships no type information (no py.typed); every result is converted to float at once.
from scipy import stats  # type: ignore[import-untyped]

Direction = Literal["higher", "lower"]
FloatArray = NDArray[np.float64]

# Below this many usable values on either side a test reports "not enough data" instead of a
# score: effect sizes are biased upwards in small samples (PSI by about (bins - 1)(1/n + 1/m)).
MIN_SAMPLES = 50
PSI_BINS = 10
# Empty bins count as this share instead of 0, where ln(0) is infinite. An empty bin facing a 10%
# bin then adds (0.1 - 1e-4) ln(0.1 / 1e-4) ~ 0.69: already a "significant" shift on its own.
PSI_EPSILON = 1e-4
# Cochran's rule for the chi-square approximation: every expected count at least 5.
MIN_EXPECTED = 5.0
# 500 + 500 embeddings make a 1000 x 1000 kernel; 500 permutations resolve p-values to 1/501.
EMBEDDING_MAX_SAMPLES = 500
EMBEDDING_PERMUTATIONS = 500


@dataclass(frozen=True, slots=True)
class Summary:
    """Size and location of one side of a comparison (None where there are no values)."""

    n: int
    mean: float | None
    median: float | None
    std: float | None


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    """One continuous feature: KS test, BH-adjusted p-value, PSI beside it, and what moved."""

    name: str
    reference: Summary
    current: Summary
    ks_statistic: float | None
    p_value: float | None
    adjusted_p_value: float | None
    psi: float | None
    # The side of the largest gap between the two ECDFs: "higher" means current values are larger.
    direction: Direction | None
    drifted: bool

    @property
    def enough_data(self) -> bool:
        """Whether the feature was tested (both sides had at least `min_samples` finite values)."""
        return self.p_value is not None


@dataclass(frozen=True, slots=True)
class ClassShift:
    """Predicted-class mix: chi-square test on the 2 x K table, total variation as effect size."""

    classes: tuple[str, ...]
    reference_share: tuple[float, ...]
    current_share: tuple[float, ...]
    n_reference: int
    n_current: int
    chi2: float | None
    dof: int | None
    p_value: float | None
    total_variation: float | None
    drifted: bool

    @property
    def enough_data(self) -> bool:
        """Whether the test ran (both windows had at least `min_samples` predictions)."""
        return self.p_value is not None

    @property
    def score(self) -> float | None:
        """The prediction_distribution score: total variation if flagged, else 0; None untested."""
        return _gated(self.drifted, self.total_variation)


@dataclass(frozen=True, slots=True)
class ConfidenceShift:
    """One-sided KS test that current confidence is lower; the statistic is the effect size."""

    reference: Summary
    current: Summary
    # max over t of (share of current <= t) - (share of reference <= t), floored at 0.
    statistic: float | None
    p_value: float | None
    drifted: bool

    @property
    def enough_data(self) -> bool:
        """Whether the test ran (both windows had at least `min_samples` confidences)."""
        return self.p_value is not None

    @property
    def score(self) -> float | None:
        """The confidence score: the one-sided KS statistic if flagged, else 0; None untested."""
        return _gated(self.drifted, self.statistic)


@dataclass(frozen=True, slots=True)
class EmbeddingShift:
    """Embeddings: RBF-kernel MMD permutation test on a subsample, normalised energy distance."""

    n_reference: int
    n_current: int
    n_reference_used: int
    n_current_used: int
    mmd2: float | None
    bandwidth: float | None
    permutations: int
    p_value: float | None
    # H = energy distance / 2E|X-Y|, in [0, 1]: how much farther apart the windows' embeddings lie
    # than embeddings within a window.
    energy_coefficient: float | None
    drifted: bool

    @property
    def enough_data(self) -> bool:
        """Whether the test ran (both windows had at least `min_samples` embeddings)."""
        return self.p_value is not None

    @property
    def score(self) -> float | None:
        """The embedding score: the energy coefficient if flagged, else 0; None untested."""
        return _gated(self.drifted, self.energy_coefficient)


@dataclass(frozen=True, slots=True)
class DriftScores:
    """The four `data_drift_score` values in [0, 1]; None where there was not enough data."""

    image_statistics: float | None
    prediction_distribution: float | None
    confidence: float | None
    embedding: float | None

    def by_metric_type(self) -> dict[str, float | None]:
        """Return the scores keyed by the gauge's `metric_type` label."""
        return {
            "image_statistics": self.image_statistics,
            "prediction_distribution": self.prediction_distribution,
            "confidence": self.confidence,
            "embedding": self.embedding,
        }


def benjamini_hochberg(p_values: ArrayLike) -> FloatArray:
    """Return Benjamini-Hochberg adjusted p-values, in the input order."""
    p = np.asarray(p_values, dtype=np.float64).ravel()
    if p.size == 0:
        return p
    if not np.all((p >= 0.0) & (p <= 1.0)):
        raise ValueError(f"p-values must lie in [0, 1], got {p.tolist()}")
    return np.asarray(stats.false_discovery_control(p, method="bh"), dtype=np.float64)


def population_stability_index(
    reference: ArrayLike, current: ArrayLike, *, bins: int = PSI_BINS, epsilon: float = PSI_EPSILON
) -> float:
    """Return the PSI of current against reference, on bins at the reference's quantiles."""
    ref = _finite(reference)
    cur = _finite(current)
    if ref.size == 0 or cur.size == 0:
        raise ValueError(f"PSI needs values on both sides, got {ref.size} and {cur.size}")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    # Ties in the reference collapse equal quantiles into one edge; a constant reference keeps
    # three bins (below, at and above its value) so that a move either way shows.
    edges = np.unique(np.quantile(ref, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    if edges.size and ref.min() == ref.max():
        edges = np.array([np.nextafter(ref[0], -np.inf), ref[0]])
    # Bins are (e[i-1], e[i]]: a point mass at the bottom of the range stays in the first bin.
    ref_share = np.bincount(np.searchsorted(edges, ref), minlength=edges.size + 1) / ref.size
    cur_share = np.bincount(np.searchsorted(edges, cur), minlength=edges.size + 1) / cur.size
    ref_share = np.maximum(ref_share, epsilon)
    cur_share = np.maximum(cur_share, epsilon)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def feature_drift(
    reference: Mapping[str, ArrayLike],
    current: Mapping[str, ArrayLike],
    *,
    alpha: float,
    min_samples: int = MIN_SAMPLES,
) -> list[FeatureDrift]:
    """Test each continuous feature with two-sample KS, adjusting p-values across them by BH."""
    _check(alpha, min_samples)
    # A feature new to the extractor has no reference yet: it is reported, not tested.
    names = [*reference, *(name for name in current if name not in reference)]
    sides = [(_finite(reference.get(name, ())), _finite(current.get(name, ()))) for name in names]
    tests = [
        _ks(ref, cur, "two-sided") if min(ref.size, cur.size) >= min_samples else None
        for ref, cur in sides
    ]
    adjusted = iter(benjamini_hochberg([test[1] for test in tests if test is not None]))
    results = []
    for name, (ref, cur), test in zip(names, sides, tests, strict=True):
        if test is None:
            results.append(
                FeatureDrift(
                    name=name,
                    reference=_summary(ref),
                    current=_summary(cur),
                    ks_statistic=None,
                    p_value=None,
                    adjusted_p_value=None,
                    psi=None,
                    direction=None,
                    drifted=False,
                )
            )
            continue
        statistic, p_value, sign = test
        adjusted_p = float(next(adjusted))
        # scipy's sign is +1 where the reference ECDF lies above the current one: current is higher.
        direction: Direction | None = (
            None if statistic == 0.0 else "higher" if sign > 0 else "lower"
        )
        results.append(
            FeatureDrift(
                name=name,
                reference=_summary(ref),
                current=_summary(cur),
                ks_statistic=statistic,
                p_value=p_value,
                adjusted_p_value=adjusted_p,
                psi=population_stability_index(ref, cur),
                direction=direction,
                drifted=adjusted_p <= alpha,
            )
        )
    return results


def class_shift(
    reference_counts: Mapping[str, int],
    current_counts: Mapping[str, int],
    *,
    alpha: float,
    min_samples: int = MIN_SAMPLES,
) -> ClassShift:
    """Test whether the predicted-class mix moved (label shift), chi-square on the 2 x K table."""
    _check(alpha, min_samples)
    classes = (*reference_counts, *(c for c in current_counts if c not in reference_counts))
    table = np.array(
        [
            [reference_counts.get(c, 0) for c in classes],
            [current_counts.get(c, 0) for c in classes],
        ],
        dtype=np.float64,
    ).reshape(2, len(classes))
    if np.any(table < 0):
        negative = {
            c for c in classes if min(reference_counts.get(c, 0), current_counts.get(c, 0)) < 0
        }
        raise ValueError(f"class counts must be >= 0, got negative counts for {sorted(negative)}")
    n_reference, n_current = (int(total) for total in table.sum(axis=1))
    shares = table / np.maximum(table.sum(axis=1, keepdims=True), 1.0)
    reference_share = tuple(float(s) for s in shares[0])
    current_share = tuple(float(s) for s in shares[1])
    if min(n_reference, n_current) < min_samples:
        return ClassShift(
            classes=classes,
            reference_share=reference_share,
            current_share=current_share,
            n_reference=n_reference,
            n_current=n_current,
            chi2=None,
            dof=None,
            p_value=None,
            total_variation=None,
            drifted=False,
        )
    # A contingency test rather than goodness of fit against the reference shares: the reference
    # is a sample too, and treating its shares as exact inflates false alarms by ~(1 + n_cur/n_ref).
    # It also copes with a class the reference never predicted, where goodness of fit divides by 0.
    chi2, dof, p_value = _chi2_contingency(table)
    total_variation = 0.5 * float(np.abs(shares[0] - shares[1]).sum())
    return ClassShift(
        classes=classes,
        reference_share=reference_share,
        current_share=current_share,
        n_reference=n_reference,
        n_current=n_current,
        chi2=chi2,
        dof=dof,
        p_value=p_value,
        total_variation=total_variation,
        drifted=p_value <= alpha,
    )


def confidence_shift(
    reference: ArrayLike, current: ArrayLike, *, alpha: float, min_samples: int = MIN_SAMPLES
) -> ConfidenceShift:
    """Test whether current confidence is lower than the reference's (one-sided two-sample KS)."""
    _check(alpha, min_samples)
    ref = _finite(reference)
    cur = _finite(current)
    if min(ref.size, cur.size) < min_samples:
        return ConfidenceShift(_summary(ref), _summary(cur), None, None, False)
    # scipy's alternative="less" is about the first sample's CDF: F_reference < F_current
    # somewhere, i.e. more current predictions below some confidence level. Only a fall alarms:
    # a model growing more confident is not an early warning.
    statistic, p_value, _ = _ks(ref, cur, "less")
    return ConfidenceShift(_summary(ref), _summary(cur), statistic, p_value, p_value <= alpha)


def embedding_shift(
    reference: ArrayLike,
    current: ArrayLike,
    *,
    rng: np.random.Generator,
    alpha: float,
    max_samples: int = EMBEDDING_MAX_SAMPLES,
    permutations: int = EMBEDDING_PERMUTATIONS,
    min_samples: int = MIN_SAMPLES,
) -> EmbeddingShift:
    """Test whether the embedding distribution moved: MMD² permutation test on a subsample."""
    _check(alpha, min_samples)
    if permutations < 1:
        raise ValueError(f"permutations must be >= 1, got {permutations}")
    if min_samples < 2 or max_samples < min_samples:
        raise ValueError(f"need 2 <= min_samples <= max_samples, got {min_samples}, {max_samples}")
    ref = _rows(reference, "reference")
    cur = _rows(current, "current")
    if ref.shape[1] != cur.shape[1]:
        raise ValueError(f"embedding widths differ: {ref.shape[1]} != {cur.shape[1]}")
    if min(len(ref), len(cur)) < min_samples:
        return EmbeddingShift(
            n_reference=len(ref),
            n_current=len(cur),
            n_reference_used=0,
            n_current_used=0,
            mmd2=None,
            bandwidth=None,
            permutations=permutations,
            p_value=None,
            energy_coefficient=None,
            drifted=False,
        )
    # The cost is bounded by the subsample, not the windows: O((2 max_samples)² permutations).
    x = _subsample(ref, max_samples, rng)
    y = _subsample(cur, max_samples, rng)
    m, n = len(x), len(y)
    z = np.vstack([x, y])
    norms = np.einsum("ij,ij->i", z, z)
    d2 = np.maximum(norms[:, None] + norms[None, :] - 2.0 * (z @ z.T), 0.0)
    np.fill_diagonal(d2, 0.0)
    pairs = d2[np.triu_indices(m + n, k=1)]
    # Median heuristic (Gretton et al. 2012): bandwidth = median pairwise distance of the pool;
    # the mean stands in when most embeddings coincide, and identical pools cannot differ at all.
    sigma2 = float(np.median(pairs)) or float(pairs.mean())
    if sigma2 == 0.0:
        return EmbeddingShift(
            n_reference=len(ref),
            n_current=len(cur),
            n_reference_used=m,
            n_current_used=n,
            mmd2=0.0,
            bandwidth=0.0,
            permutations=permutations,
            p_value=1.0,
            energy_coefficient=0.0,
            drifted=False,
        )
    kernel = np.exp(-d2 / (2.0 * sigma2))
    np.fill_diagonal(kernel, 0.0)  # the unbiased estimate leaves out each point's self-similarity
    mmd2 = _permuted_mmd2(kernel, m, permutations, rng)
    # k counts permutations at least as extreme; +1 on both sides counts the observed labelling
    # itself, so the p-value is never 0 (Phipson & Smyth 2010) and the test has level alpha.
    exceed = int(np.count_nonzero(mmd2[1:] >= mmd2[0]))
    p_value = (exceed + 1) / (permutations + 1)
    return EmbeddingShift(
        n_reference=len(ref),
        n_current=len(cur),
        n_reference_used=m,
        n_current_used=n,
        mmd2=float(mmd2[0]),
        bandwidth=float(np.sqrt(sigma2)),
        permutations=permutations,
        p_value=p_value,
        energy_coefficient=_energy_coefficient(np.sqrt(d2), m),
        drifted=p_value <= alpha,
    )


def drift_scores(
    *,
    features: Sequence[FeatureDrift],
    classes: ClassShift | None,
    confidence: ConfidenceShift | None,
    embedding: EmbeddingShift | None,
) -> DriftScores:
    """Return the four `data_drift_score` values: 0 unless the test flagged drift, None if untested.

    image_statistics is the share of tested features flagged after BH; the others are the test's
    effect size (total variation, one-sided KS statistic, energy coefficient) when it flagged.
    """
    tested = [feature for feature in features if feature.enough_data]
    image = sum(f.drifted for f in tested) / len(tested) if tested else None
    return DriftScores(
        image_statistics=image,
        prediction_distribution=None if classes is None else classes.score,
        confidence=None if confidence is None else confidence.score,
        embedding=None if embedding is None else embedding.score,
    )


def _gated(drifted: bool, effect: float | None) -> float | None:
    # Zero unless the test flagged: under no drift the score is 0 with probability >= 1 - alpha,
    # so an alert on "score > threshold" inherits the test's false-alarm control.
    if effect is None:
        return None
    return effect if drifted else 0.0


def _check(alpha: float, min_samples: int) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if min_samples < 1:
        raise ValueError(f"min_samples must be >= 1, got {min_samples}")


def _finite(values: ArrayLike) -> FloatArray:
    # NaN and infinities are dropped, not imputed: a missing feature value is not a value.
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def _rows(values: ArrayLike, side: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{side} embeddings must be a 2-D array, got shape {array.shape}")
    return array[np.isfinite(array).all(axis=1)]


def _summary(values: FloatArray) -> Summary:
    if values.size == 0:
        return Summary(0, None, None, None)
    return Summary(values.size, float(values.mean()), float(np.median(values)), float(values.std()))


def _ks(reference: FloatArray, current: FloatArray, alternative: str) -> tuple[float, float, int]:
    """Return the KS statistic, p-value and scipy's statistic_sign."""
    if reference.min() == reference.max() == current.min() == current.max():
        return 0.0, 1.0, 0  # two identical constants: no gap, and no test to run
    # "asymp" on purpose: "exact" is slow on large windows and, where it fails, warns and falls
    # back; at MIN_SAMPLES and above the asymptotic p-value is close (see the null-rate test).
    result = stats.ks_2samp(reference, current, alternative=alternative, method="asymp")
    return float(result.statistic), float(result.pvalue), int(result.statistic_sign)


def _chi2_contingency(table: FloatArray) -> tuple[float, int, float]:
    """Return Pearson's chi-square, dof and p-value, after merging classes too rare to test."""
    table = table[:, table.sum(axis=0) > 0]
    # A column's smallest expected count is min(row total) * column total / N: merge the rarest
    # columns until it is at least MIN_EXPECTED everywhere, rather than trust a poor approximation.
    floor = MIN_EXPECTED * table.sum() / table.sum(axis=1).min()
    table = table[:, np.argsort(table.sum(axis=0))]
    while table.shape[1] > 1 and table[:, 0].sum() < floor:
        merged = table[:, :2].sum(axis=1, keepdims=True)
        table = np.hstack([merged, table[:, 2:]])
        table = table[:, np.argsort(table.sum(axis=0))]
    if table.shape[1] < 2:
        return 0.0, 0, 1.0  # a single (merged) class: nothing can have shifted
    # No Yates correction: it only applies to 2 x 2 tables and is known to be over-conservative.
    result = stats.chi2_contingency(table, correction=False)
    return float(result.statistic), int(result.dof), float(result.pvalue)


def _subsample(rows: FloatArray, size: int, rng: np.random.Generator) -> FloatArray:
    if len(rows) <= size:
        return rows
    return rows[rng.choice(len(rows), size=size, replace=False)]


def _permuted_mmd2(
    kernel: FloatArray, m: int, permutations: int, rng: np.random.Generator
) -> FloatArray:
    """Return unbiased MMD² for the observed split (index 0) and `permutations` random ones.

    One matrix product serves all splits: with A the 0/1 membership matrix of the first sample
    (one column per split) and r the kernel's row sums, the within- and cross-sample sums are
    Sxx = diag(AᵀKA), Sxy = rᵀA - Sxx and Syy = sum(K) - 2 rᵀA + Sxx.
    """
    size = kernel.shape[0]
    n = size - m
    labels = np.zeros(size)
    labels[:m] = 1.0
    members = np.empty((size, permutations + 1))
    members[:, 0] = labels
    members[:, 1:] = rng.permuted(np.tile(labels, (permutations, 1)), axis=1).T
    row_sums = kernel.sum(axis=1)
    s_xx = np.einsum("ip,ip->p", members, kernel @ members)
    r_a = row_sums @ members
    s_xy = r_a - s_xx
    s_yy = row_sums.sum() - 2.0 * r_a + s_xx
    mmd2: FloatArray = s_xx / (m * (m - 1)) + s_yy / (n * (n - 1)) - 2.0 * s_xy / (m * n)
    return mmd2


def _energy_coefficient(distances: FloatArray, m: int) -> float:
    """Return H = (2E|X-Y| - E|X-X'| - E|Y-Y'|) / (2E|X-Y|), clipped to [0, 1].

    Székely and Rizzo's energy distance over its bound 2E|X-Y|: 0 when both samples come from one
    distribution, towards 1 as they separate. Unlike MMD² it has no bandwidth, so runs compare.
    """
    n = distances.shape[0] - m
    cross = float(distances[:m, m:].mean())
    if cross == 0.0:
        return 0.0
    # Diagonals are 0, so block sums over m(m - 1) pairs are the unbiased within-sample means.
    within_x = float(distances[:m, :m].sum()) / (m * (m - 1))
    within_y = float(distances[m:, m:].sum()) / (n * (n - 1))
    return float(np.clip((2.0 * cross - within_x - within_y) / (2.0 * cross), 0.0, 1.0))


# z for a two-sided 95% interval, rounded as in the usual tables (Agresti & Coull 1998).
Z_95 = 1.96


def wilson_interval(correct: int, total: int, *, z: float = Z_95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (Wilson 1927); None with no trials."""
    if total < 0 or not 0 <= correct <= total:
        raise ValueError(f"need 0 <= correct <= total, got correct={correct}, total={total}")
    if total == 0:
        return None
    share = correct / total
    spread = z * z / total
    centre = (share + spread / 2) / (1 + spread)
    half = z / (1 + spread) * math.sqrt(share * (1 - share) / total + spread / (4 * total))
    # Clamp float noise only: the exact bounds always lie in [0, 1].
    return max(0.0, centre - half), min(1.0, centre + half)
