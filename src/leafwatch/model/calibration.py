"""Calibration measures: how far a model's confidence is from its accuracy."""

import numpy as np
from numpy.typing import ArrayLike


def expected_calibration_error(confidences: ArrayLike, correct: ArrayLike, bins: int = 15) -> float:
    """Return the ECE: size-weighted mean |accuracy - confidence| over equal-width bins."""
    conf = np.asarray(confidences, dtype=np.float64).ravel()
    hits = np.asarray(correct, dtype=np.float64).ravel()
    if conf.shape != hits.shape:
        raise ValueError(f"confidences and correct differ in length: {conf.size} != {hits.size}")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if conf.size == 0:
        return 0.0
    if conf.min() < 0.0 or conf.max() > 1.0:
        raise ValueError(f"confidences must lie in [0, 1], got [{conf.min()}, {conf.max()}]")
    # Bins are (k/bins, (k+1)/bins], with 0 in the first: the usual convention (Guo et al. 2017).
    index = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    accuracy_mass = np.bincount(index, weights=hits, minlength=bins)
    confidence_mass = np.bincount(index, weights=conf, minlength=bins)
    return float(np.abs(accuracy_mass - confidence_mass).sum() / conf.size)
