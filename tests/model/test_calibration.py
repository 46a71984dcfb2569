"""Expected calibration error: zero when confidence matches accuracy, the gap when it does not."""

import numpy as np
import pytest

from leafwatch.model.calibration import expected_calibration_error


def test_perfectly_calibrated_bins_give_zero() -> None:
    # Confidence 0.8 and 8 of 10 right; confidence 0.5 and 5 of 10 right.
    confidences = [0.8] * 10 + [0.5] * 10
    correct = [1] * 8 + [0] * 2 + [1] * 5 + [0] * 5
    assert expected_calibration_error(confidences, correct) == pytest.approx(0.0)


def test_overconfidence_is_the_weighted_gap() -> None:
    # Half the sample claims 0.9 and is right half the time: a gap of 0.4 on half the weight.
    confidences = [0.9] * 10 + [0.55] * 10
    correct = [1, 0] * 5 + [1] * 5 + [0] * 5
    expected = (10 * abs(0.5 - 0.9) + 10 * abs(0.5 - 0.55)) / 20
    assert expected_calibration_error(confidences, correct) == pytest.approx(expected)


def test_a_confidence_on_a_bin_edge_falls_in_the_lower_bin() -> None:
    # With 2 bins, 0.5 belongs to (0, 0.5] and 1.0 to (0.5, 1]: no gap when each bin is right.
    assert expected_calibration_error([0.5, 0.5, 1.0], [1, 0, 1], bins=2) == pytest.approx(0.0)


def test_bins_split_confidences_that_one_bin_would_average_away() -> None:
    confidences = np.array([0.2, 0.2, 0.9, 0.9])
    correct = np.array([1, 1, 0, 0])
    assert expected_calibration_error(confidences, correct, bins=1) == pytest.approx(0.05)
    assert expected_calibration_error(confidences, correct, bins=15) == pytest.approx(0.85)


def test_empty_input_is_zero_and_bad_input_is_refused() -> None:
    assert expected_calibration_error([], []) == 0.0
    with pytest.raises(ValueError, match="differ in length"):
        expected_calibration_error([0.5], [1, 0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error([1.5], [1])
    with pytest.raises(ValueError, match="bins"):
        expected_calibration_error([0.5], [1], bins=0)
