"""Shared constants and small helpers of the statistical tests (see tests/conftest.py for the budget).

Every statistical test in this suite uses its own fixed seed and the per-test false-positive rate ``ALPHA``; a test
that makes several comparisons splits ``ALPHA`` among them (Bonferroni) so that the test as a whole keeps it.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

#: False-positive rate of one statistical test (whole test, after Bonferroni over its comparisons).
ALPHA = 1e-4


def z_threshold(alpha: float = ALPHA, comparisons: int = 1) -> float:
    """Two-sided z threshold ``K`` such that ``P(|N(0,1)| > K) = alpha / comparisons``."""
    return float(stats.norm.isf(alpha / (2 * comparisons)))


def z_score(measured: float, expected: float, stderr: float) -> float:
    """``(measured - expected) / stderr``."""
    return (measured - expected) / stderr


def normal_ks_pvalue(values: np.ndarray, mean: float, std: float) -> float:
    """One-sample Kolmogorov-Smirnov p-value of ``values`` against ``N(mean, std^2)``."""
    return float(stats.kstest(np.asarray(values, dtype=np.float64), "norm", args=(mean, std)).pvalue)
