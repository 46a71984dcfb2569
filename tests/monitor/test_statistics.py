"""Drift statistics on data with known answers: no drift stays quiet, drift is caught."""

import math

import numpy as np
import pytest

from leafwatch.monitor.statistics import (
    PSI_EPSILON,
    ClassShift,
    ConfidenceShift,
    EmbeddingShift,
    Summary,
    _permuted_mmd2,
    benjamini_hochberg,
    class_shift,
    confidence_shift,
    drift_scores,
    embedding_shift,
    feature_drift,
    population_stability_index,
)

CLASSES = ("Healthy", "Stage1", "Stage2", "Stage3", "Stage4", "Stage5", "Stage6")
PRIOR = np.array([0.40, 0.15, 0.12, 0.10, 0.10, 0.08, 0.05])


def normal_features(
    rng: np.random.Generator, n: int, shifts: dict[str, float]
) -> dict[str, np.ndarray]:
    return {name: rng.normal(shift, 1.0, size=n) for name, shift in shifts.items()}


# Features --------------------------------------------------------------------------------------


def test_samples_of_one_distribution_are_not_flagged() -> None:
    rng = np.random.default_rng(1)
    names = {f"feature_{i}": 0.0 for i in range(15)}
    results = feature_drift(
        normal_features(rng, 2000, names), normal_features(rng, 1000, names), alpha=0.05
    )
    assert [r.name for r in results] == list(names)
    assert not any(r.drifted for r in results)
    # PSI's sampling noise, about (bins - 1)(1/n + 1/m) = 0.014 here, stays under the 0.1 rule.
    assert all(r.psi is not None and r.psi < 0.1 for r in results)


def test_a_shifted_normal_is_flagged_with_its_direction() -> None:
    rng = np.random.default_rng(2)
    reference = normal_features(rng, 2000, {"brightness": 0.0, "contrast": 0.0, "hue": 0.0})
    current = normal_features(rng, 1000, {"brightness": 0.3, "contrast": -0.3, "hue": 0.0})
    by_name = {r.name: r for r in feature_drift(reference, current, alpha=0.05)}
    assert by_name["brightness"].drifted
    assert by_name["brightness"].direction == "higher"
    assert by_name["contrast"].drifted
    assert by_name["contrast"].direction == "lower"
    assert not by_name["hue"].drifted
    brightness = by_name["brightness"]
    assert brightness.current.mean is not None
    assert brightness.reference.mean is not None
    assert brightness.current.mean - brightness.reference.mean == pytest.approx(0.3, abs=0.1)


def test_feature_p_values_are_adjusted_together_by_benjamini_hochberg() -> None:
    rng = np.random.default_rng(3)
    shifts = {"a": 0.0, "b": 0.05, "c": 0.1, "d": 0.2}
    results = feature_drift(
        normal_features(rng, 500, shifts), normal_features(rng, 500, shifts), alpha=0.05
    )
    raw = [r.p_value for r in results]
    assert [r.adjusted_p_value for r in results] == pytest.approx(benjamini_hochberg(raw).tolist())
    assert all(
        r.drifted == (r.adjusted_p_value is not None and r.adjusted_p_value <= 0.05)
        for r in results
    )


def test_benjamini_hochberg_matches_a_hand_computation() -> None:
    # Sorted: 0.005, 0.01, 0.03, 0.04, 0.2; times m/rank: 0.025, 0.025, 0.05, 0.05, 0.2;
    # then the running minimum from the largest rank down leaves them as they are.
    adjusted = benjamini_hochberg([0.01, 0.04, 0.03, 0.005, 0.2])
    assert adjusted.tolist() == pytest.approx([0.025, 0.05, 0.05, 0.025, 0.2])


def test_benjamini_hochberg_rejects_four_of_the_fifteen_in_the_1995_example() -> None:
    # Benjamini & Hochberg (1995), section 4: BH at q = 0.05 rejects 4, Bonferroni only 3.
    p = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459]
    p += [0.3240, 0.4262, 0.5719, 0.6528, 0.7590, 1.0000]
    assert int((benjamini_hochberg(p) <= 0.05).sum()) == 4
    assert sum(value * len(p) <= 0.05 for value in p) == 3
    assert benjamini_hochberg([]).size == 0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        benjamini_hochberg([0.5, 1.5])


def test_nan_few_values_and_constant_features_are_handled_explicitly() -> None:
    rng = np.random.default_rng(4)
    reference = {
        "with_nan": np.r_[rng.normal(size=200), [np.nan] * 30, [np.inf]],
        "too_few": rng.normal(size=20),
        "constant": np.full(200, 3.0),
        "moved_constant": np.full(200, 3.0),
    }
    current = {
        "with_nan": np.r_[rng.normal(size=100), [np.nan] * 10],
        "too_few": rng.normal(size=200),
        "constant": np.full(100, 3.0),
        "moved_constant": np.full(100, 4.0),
        "new_feature": rng.normal(size=100),
    }
    by_name = {r.name: r for r in feature_drift(reference, current, alpha=0.05)}
    assert (by_name["with_nan"].reference.n, by_name["with_nan"].current.n) == (200, 100)
    assert by_name["with_nan"].enough_data
    for untested in ("too_few", "new_feature"):
        assert not by_name[untested].enough_data
        assert by_name[untested].adjusted_p_value is None
        assert not by_name[untested].drifted
    assert by_name["new_feature"].reference.mean is None
    constant = by_name["constant"]
    assert (constant.ks_statistic, constant.p_value, constant.psi) == (0.0, 1.0, 0.0)
    assert constant.direction is None
    assert not constant.drifted
    assert by_name["moved_constant"].drifted
    assert by_name["moved_constant"].direction == "higher"
    # Untested features are neither in the BH family nor in the score's denominator.
    tested = [r for r in by_name.values() if r.enough_data]
    assert len(tested) == 3
    raw = [r.p_value for r in tested]
    assert [r.adjusted_p_value for r in tested] == pytest.approx(benjamini_hochberg(raw).tolist())
    scores = drift_scores(
        features=list(by_name.values()), classes=None, confidence=None, embedding=None
    )
    assert scores.image_statistics == pytest.approx(1 / 3)


# Population stability index --------------------------------------------------------------------


def test_psi_of_identical_samples_is_zero() -> None:
    rng = np.random.default_rng(5)
    sample = rng.normal(size=5000)
    assert population_stability_index(sample, sample) == 0.0
    assert population_stability_index(sample, rng.normal(size=5000)) < 0.01


def test_psi_of_a_known_shift_matches_the_hand_computation() -> None:
    # Reference 0..999: decile bins of 100 values each. Current puts 15% in each of the lower five
    # bins and 5% in each upper one: PSI = 5 (0.05 ln 1.5) + 5 (-0.05 ln 0.5) = 0.25 ln 3.
    reference = np.arange(1000.0)
    current = np.concatenate([100 * k + np.arange(15 if k < 5 else 5) for k in range(10)]).astype(
        np.float64
    )
    assert population_stability_index(reference, current) == pytest.approx(0.25 * math.log(3))


def test_psi_floors_empty_bins_at_epsilon() -> None:
    reference = np.arange(1000.0)
    current = np.concatenate([100 * k + np.arange(20) for k in range(5)]).astype(np.float64)
    expected = 5 * 0.1 * math.log(2) + 5 * (0.1 - PSI_EPSILON) * math.log(0.1 / PSI_EPSILON)
    assert population_stability_index(reference, current) == pytest.approx(expected)


def test_psi_of_a_constant_reference_sees_a_move_either_way() -> None:
    reference = np.full(100, 2.0)
    assert population_stability_index(reference, np.full(50, 2.0)) == 0.0
    # Bins below, at and above 2: half the current moves above, one bin empties by half.
    half_up = np.r_[np.full(25, 2.0), np.full(25, 3.0)]
    expected = 0.5 * math.log(2) + (0.5 - PSI_EPSILON) * math.log(0.5 / PSI_EPSILON)
    assert population_stability_index(reference, half_up) == pytest.approx(expected)
    half_down = np.r_[np.full(25, 2.0), np.full(25, 1.0)]
    assert population_stability_index(reference, half_down) == pytest.approx(expected)


# Predicted classes -----------------------------------------------------------------------------


def counts(values: np.ndarray) -> dict[str, int]:
    return {name: int(v) for name, v in zip(CLASSES, values, strict=True)}


def test_a_prior_shift_towards_two_classes_is_flagged_with_its_total_variation() -> None:
    reference = counts(PRIOR * 10_000)
    shifted = PRIOR.copy()
    shifted[0] -= 0.10  # ten points of Healthy move to the late stages
    shifted[5] += 0.05
    shifted[6] += 0.05
    result = class_shift(reference, counts(shifted * 2_000), alpha=0.05)
    assert result.drifted
    assert result.total_variation == pytest.approx(0.10)
    assert result.classes == CLASSES
    assert result.current_share[6] == pytest.approx(0.10)


def test_a_resample_of_the_same_prior_is_not_flagged() -> None:
    rng = np.random.default_rng(6)
    reference = counts(rng.multinomial(10_000, PRIOR))
    result = class_shift(reference, counts(rng.multinomial(2_000, PRIOR)), alpha=0.05)
    assert result.enough_data
    assert not result.drifted
    assert result.total_variation is not None
    assert result.total_variation < 0.03


def test_a_class_the_reference_never_predicted_is_tested_not_divided_by() -> None:
    reference = {"Healthy": 600, "Stage1": 400}
    current = {"Healthy": 120, "Stage1": 80, "Stage6": 40}
    result = class_shift(reference, current, alpha=0.05)
    assert result.classes == ("Healthy", "Stage1", "Stage6")
    assert result.reference_share[2] == 0.0
    assert result.drifted
    assert result.total_variation == pytest.approx(40 / 240)


def test_classes_too_rare_for_the_chi_square_are_merged() -> None:
    # Stage5 and Stage6 have expected counts under 5 in the current window: they are merged.
    # Expected current counts 3.7 and 2.8; merged, 6.4: three columns remain.
    reference = {"Healthy": 5000, "Stage1": 4650, "Stage5": 200, "Stage6": 150}
    current = {"Healthy": 100, "Stage1": 80, "Stage5": 3, "Stage6": 2}
    result = class_shift(reference, current, alpha=0.05)
    assert result.dof == 2
    assert result.p_value is not None
    assert 0.0 < result.p_value <= 1.0
    assert not result.drifted
    # Merged, the rare classes are still too rare: they join the next rarest class as well.
    rarer = class_shift(
        {"Healthy": 5000, "Stage1": 4980, "Stage5": 12, "Stage6": 8},
        {"Healthy": 100, "Stage1": 100, "Stage5": 1, "Stage6": 0},
        alpha=0.05,
    )
    assert rarer.dof == 1


def test_too_few_predictions_give_no_class_test() -> None:
    result = class_shift({"Healthy": 500}, {"Healthy": 10, "Stage1": 5}, alpha=0.05)
    assert not result.enough_data
    assert result.total_variation is None
    assert not result.drifted
    with pytest.raises(ValueError, match="Stage1"):
        class_shift({"Healthy": 500, "Stage1": -1}, {"Healthy": 100}, alpha=0.05)


# Confidence ------------------------------------------------------------------------------------


def test_falling_confidence_is_flagged_and_rising_confidence_is_not() -> None:
    rng = np.random.default_rng(7)
    reference = rng.beta(8, 2, size=5000)
    lower = confidence_shift(reference, rng.beta(6, 2, size=1000), alpha=0.05)
    higher = confidence_shift(reference, rng.beta(12, 2, size=1000), alpha=0.05)
    same = confidence_shift(reference, rng.beta(8, 2, size=1000), alpha=0.05)
    assert lower.drifted
    assert lower.statistic is not None
    assert lower.statistic > 0.1
    assert not higher.drifted
    assert higher.statistic is not None
    assert higher.statistic < 0.01
    assert not same.drifted


def test_confidence_statistic_is_the_excess_share_below_a_level() -> None:
    # Half the current predictions fall to 0.5: 50 points more of them lie at or below 0.5.
    reference = np.full(200, 0.9)
    current = np.r_[np.full(100, 0.5), np.full(100, 0.9)]
    assert confidence_shift(reference, current, alpha=0.05).statistic == pytest.approx(0.5)
    risen = np.r_[np.full(100, 0.95), np.full(100, 0.9)]
    assert confidence_shift(reference, risen, alpha=0.05).statistic == pytest.approx(0.0)


def test_too_few_confidences_give_no_confidence_test() -> None:
    result = confidence_shift(np.full(200, 0.9), np.full(10, 0.2), alpha=0.05)
    assert not result.enough_data
    assert not result.drifted
    assert result.current.n == 10


# Embeddings ------------------------------------------------------------------------------------


def embeddings(
    rng: np.random.Generator, n: int, shift: float = 0.0, scale: float = 1.0
) -> np.ndarray:
    return rng.normal(shift, scale, size=(n, 32))


def test_mmd_catches_a_mean_shift_in_32_dimensions() -> None:
    rng = np.random.default_rng(8)
    result = embedding_shift(
        embeddings(rng, 1000), embeddings(rng, 600, shift=0.2), rng=rng, alpha=0.05
    )
    assert result.drifted
    assert result.energy_coefficient is not None
    assert result.energy_coefficient > 0.0


def test_mmd_catches_a_covariance_change_with_unchanged_means_and_variances() -> None:
    rng = np.random.default_rng(9)
    # Every coordinate stays N(0, 1), but a shared factor correlates them at 0.3.
    common = rng.normal(size=(600, 1))
    correlated = math.sqrt(0.7) * rng.normal(size=(600, 32)) + math.sqrt(0.3) * common
    result = embedding_shift(embeddings(rng, 1000), correlated, rng=rng, alpha=0.05)
    assert result.drifted


def test_mmd_does_not_flag_a_sample_of_the_same_distribution() -> None:
    # One null sample is flagged with probability alpha whatever the seed; the rate over many
    # samples is what the false-alarm test at the end checks.
    rng = np.random.default_rng(10)
    result = embedding_shift(embeddings(rng, 1000), embeddings(rng, 600), rng=rng, alpha=0.01)
    assert not result.drifted
    assert result.energy_coefficient is not None
    assert result.energy_coefficient < 0.01


def test_mmd_p_value_counts_the_observed_split_and_is_never_zero() -> None:
    rng = np.random.default_rng(11)
    far = embedding_shift(
        embeddings(rng, 300),
        embeddings(rng, 300, shift=100.0),
        rng=rng,
        alpha=0.05,
        permutations=99,
    )
    assert far.p_value == pytest.approx(1 / 100)
    assert far.energy_coefficient is not None
    assert far.energy_coefficient > 0.9


def test_mmd_is_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(12)
    reference, current = embeddings(rng, 2000), embeddings(rng, 800, shift=0.02)
    first = embedding_shift(reference, current, rng=np.random.default_rng(42), alpha=0.05)
    second = embedding_shift(reference, current, rng=np.random.default_rng(42), alpha=0.05)
    assert first == second


def test_mmd_subsamples_large_windows() -> None:
    rng = np.random.default_rng(13)
    result = embedding_shift(
        embeddings(rng, 50_000), embeddings(rng, 10_000), rng=rng, alpha=0.05, max_samples=400
    )
    assert (result.n_reference, result.n_current) == (50_000, 10_000)
    assert (result.n_reference_used, result.n_current_used) == (400, 400)


def test_reported_mmd2_is_the_unbiased_estimate_at_the_reported_bandwidth() -> None:
    rng = np.random.default_rng(14)
    x, y = embeddings(rng, 60), embeddings(rng, 80, shift=0.3)
    result = embedding_shift(x, y, rng=rng, alpha=0.05, max_samples=100)
    assert result.bandwidth is not None

    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1)
        return np.exp(-d2 / (2 * result.bandwidth**2))

    kxx, kyy = k(x, x), k(y, y)
    expected = (
        (kxx.sum() - np.trace(kxx)) / (60 * 59)
        + (kyy.sum() - np.trace(kyy)) / (80 * 79)
        - 2 * k(x, y).mean()
    )
    assert result.mmd2 == pytest.approx(expected)


def test_vectorised_permutations_match_recomputing_each_split() -> None:
    # The matrix trick in _permuted_mmd2 must equal the textbook estimate for every split it drew.
    rng = np.random.default_rng(15)
    points = rng.normal(size=(30, 3))
    kernel = np.exp(-((points[:, None] - points[None]) ** 2).sum(-1) / 2)
    np.fill_diagonal(kernel, 0.0)
    m = 12
    draws = np.random.default_rng(0)
    fast = _permuted_mmd2(kernel, m, 5, draws)
    labels = np.r_[np.ones(m), np.zeros(30 - m)]
    replay = np.random.default_rng(0).permuted(np.tile(labels, (5, 1)), axis=1)
    for column, split in enumerate([labels, *replay]):
        x, y = split == 1, split == 0
        slow = (
            kernel[np.ix_(x, x)].sum() / (m * (m - 1))
            + kernel[np.ix_(y, y)].sum() / (18 * 17)
            - 2 * kernel[np.ix_(x, y)].mean()
        )
        assert fast[column] == pytest.approx(slow)


def test_embedding_shift_refuses_mismatched_widths_and_reports_too_few() -> None:
    rng = np.random.default_rng(16)
    with pytest.raises(ValueError, match="32 != 16"):
        embedding_shift(embeddings(rng, 100), rng.normal(size=(100, 16)), rng=rng, alpha=0.05)
    few = embedding_shift(embeddings(rng, 100), embeddings(rng, 10), rng=rng, alpha=0.05)
    assert not few.enough_data
    assert few.energy_coefficient is None
    with pytest.raises(ValueError, match="alpha"):
        embedding_shift(embeddings(rng, 100), embeddings(rng, 100), rng=rng, alpha=1.5)


# Scores and the false-alarm rate ---------------------------------------------------------------


def test_scores_are_zero_unless_a_test_flagged_and_none_without_data() -> None:
    classes = ClassShift(
        CLASSES[:2], (0.5, 0.5), (0.4, 0.6), 100, 100, 2.0, 1, 0.2, 0.1, drifted=False
    )
    side = Summary(100, 0.8, 0.8, 0.1)
    confidence = ConfidenceShift(side, side, statistic=0.3, p_value=0.001, drifted=True)
    embedding = EmbeddingShift(100, 5, 0, 0, None, None, 500, None, None, drifted=False)
    scores = drift_scores(features=[], classes=classes, confidence=confidence, embedding=embedding)
    assert scores.by_metric_type() == {
        "image_statistics": None,
        "prediction_distribution": 0.0,
        "confidence": 0.3,
        "embedding": None,
    }


def test_the_whole_battery_raises_few_false_alarms_under_no_drift() -> None:
    # 200 no-drift runs of all four tests, each at alpha / 4 (Bonferroni across the four families,
    # BH within the features): the share of runs with any non-zero score should be about alpha.
    # Six features rather than fifteen keep it quick; BH holds the family at alpha / 4 either way.
    alpha, runs = 0.05, 200
    rng = np.random.default_rng(2026)
    names = {f"feature_{i}": 0.0 for i in range(6)}
    alarms = 0
    seed_scores = []
    for _ in range(runs):
        features = feature_drift(
            normal_features(rng, 600, names), normal_features(rng, 200, names), alpha=alpha / 4
        )
        classes = class_shift(
            counts(rng.multinomial(600, PRIOR)),
            counts(rng.multinomial(200, PRIOR)),
            alpha=alpha / 4,
        )
        confidence = confidence_shift(rng.beta(8, 2, 600), rng.beta(8, 2, 200), alpha=alpha / 4)
        embedding = embedding_shift(
            embeddings(rng, 600),
            embeddings(rng, 200),
            rng=rng,
            alpha=alpha / 4,
            max_samples=100,
            permutations=99,
        )
        scores = drift_scores(
            features=features, classes=classes, confidence=confidence, embedding=embedding
        )
        alarms += any(score for score in scores.by_metric_type().values())
        seed_scores.append(1 - np.mean([f.p_value for f in features]))
    share = alarms / runs
    margin = 3 * math.sqrt(alpha * (1 - alpha) / runs)  # three binomial standard errors
    assert 0.005 <= share <= alpha + margin
    # The seed's "1 - mean(p-value)" sits near 0.5 with no drift at all: p-values are uniform.
    assert np.mean(seed_scores) == pytest.approx(0.5, abs=0.03)
