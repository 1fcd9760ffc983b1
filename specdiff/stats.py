"""Statistical tests for checking a sampler's law: projected Kolmogorov-Smirnov, MMD and energy tests.

A public module (docs/design.md §5): users call it to test their own samplers against a known law or against another
sampler. Inputs are torch tensors of shape (n, *event) on any device; the event is flattened to ``d`` coordinates
and all arithmetic is in float64. Kolmogorov-Smirnov p-values are computed by scipy on the CPU; the kernel and
energy tests run with torch on the device of their inputs.

Conventions:

- **All randomness is explicit**: random projection directions and permutations are drawn from the
  ``torch.Generator`` passed in; the same generator state gives the same result.
- **Several projections are combined by Bonferroni**: the reported p-value is ``min(1, k * min_j p_j)`` over the
  ``k`` directions. It is valid (size at most the nominal level) whatever the dependence between directions, and
  conservative.
- **Permutation p-values** are ``(1 + #{permutations with statistic >= observed}) / (1 + permutations)``, which is
  exactly valid (``P(p <= alpha) <= alpha``) under exchangeability of the pooled sample.
- **Never share random streams between the two arms** of a two-sample comparison: the tests assume the two
  samples are independent.

Shapes: ``n`` and ``m`` the sizes of the two samples, ``d`` the number of event coordinates, ``k`` the number of
projection directions, ``N = n + m``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats as scipy_stats

__all__ = [
    "ComparisonReport",
    "PermutationTestResult",
    "ProjectionTestResult",
    "TestRow",
    "bonferroni",
    "compare_samplers",
    "energy_test",
    "ks_one_sample_projection",
    "ks_two_sample_projection",
    "median_heuristic_bandwidth",
    "mmd_test",
    "random_directions",
]

_UNIT_NORM_TOLERANCE = 1e-6
_PERMUTATION_CHUNK_ELEMENTS = 2**24  # bound on N x chunk entries of a product Gram @ labels


@dataclass(frozen=True)
class ProjectionTestResult:
    """Outcome of a Kolmogorov-Smirnov test on projections, combined over directions by Bonferroni.

    Attributes
    ----------
    statistic : float
        The largest KS statistic over the directions.
    p_value : float
        Bonferroni-combined p-value ``min(1, k * min_j p_values[j])``.
    statistics : tuple of float, length k
        KS statistic of each direction.
    p_values : tuple of float, length k
        Uncorrected KS p-value of each direction.
    directions : Tensor, shape (k, d), float64
        The unit directions used (on the device of the samples).
    """

    statistic: float
    p_value: float
    statistics: tuple[float, ...]
    p_values: tuple[float, ...]
    directions: torch.Tensor


@dataclass(frozen=True)
class PermutationTestResult:
    """Outcome of a two-sample permutation test.

    Attributes
    ----------
    statistic : float
        The observed statistic (unbiased MMD² or energy distance).
    p_value : float
        ``(1 + #{permuted statistic >= observed}) / (1 + permutations)``.
    permutations : int
        Number of random permutations.
    bandwidth : float or None
        Gaussian kernel bandwidth (MMD only), else None.
    """

    statistic: float
    p_value: float
    permutations: int
    bandwidth: float | None = None


@dataclass(frozen=True)
class TestRow:
    """One test of a :class:`ComparisonReport`.

    Attributes
    ----------
    name : str
        Name of the test.
    statistic : float
        Its statistic.
    p_value : float
        Its p-value.
    rejected : bool
        Whether ``p_value <= alpha``.
    """

    __test__ = False  # not a pytest test class

    name: str
    statistic: float
    p_value: float
    rejected: bool


@dataclass(frozen=True)
class ComparisonReport:
    """Outcome of :func:`compare_samplers`: one row per test.

    Attributes
    ----------
    rows : tuple of TestRow
        The tests, in the order they were run.
    alpha : float
        Level at which each test is judged (each row separately: the report as a whole rejects a correct sampler
        with probability at most ``len(rows) * alpha``).
    """

    rows: tuple[TestRow, ...]
    alpha: float

    @property
    def any_rejected(self) -> bool:
        """Whether at least one test rejected at ``alpha``."""
        return any(row.rejected for row in self.rows)

    def format(self) -> str:
        """Text table with one line per test: name, statistic, p-value, verdict at ``alpha``."""
        name_width = max(len("test"), *(len(row.name) for row in self.rows))
        header = f"{'test':<{name_width}}  {'statistic':>12}  {'p-value':>10}  verdict (alpha={self.alpha:g})"
        lines = [header, "-" * len(header)]
        for row in self.rows:
            verdict = "REJECTED" if row.rejected else "not rejected"
            lines.append(f"{row.name:<{name_width}}  {row.statistic:>12.6g}  {row.p_value:>10.4g}  {verdict}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# Validation and small helpers
# ----------------------------------------------------------------------------------------------------------------


def _as_sample_matrix(samples: torch.Tensor, name: str) -> torch.Tensor:
    """Validate a sample tensor (n, *event) and flatten it to a float64 matrix (n, d)."""
    if not isinstance(samples, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(samples).__name__}")
    if samples.dim() < 1:
        raise ValueError(f"{name} must have shape (n, *event), got a 0-dimensional tensor")
    if samples.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 samples, got {samples.shape[0]}")
    if samples.is_complex():
        raise ValueError(f"{name} must be real-valued")
    matrix = samples.reshape(samples.shape[0], -1).to(torch.float64)
    if matrix.shape[1] == 0:
        raise ValueError(f"{name} has an empty event shape {tuple(samples.shape[1:])}")
    if not bool(torch.isfinite(matrix).all()):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return matrix


def _check_same_event(first: torch.Tensor, second: torch.Tensor) -> None:
    if tuple(first.shape[1:]) != tuple(second.shape[1:]):
        raise ValueError(
            f"the two samples have different event shapes {tuple(first.shape[1:])} and {tuple(second.shape[1:])}"
        )
    if first.device != second.device:
        raise ValueError(f"the two samples are on different devices {first.device} and {second.device}")


def _check_generator(generator: torch.Generator | None, name: str = "generator") -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"{name} must be a torch.Generator (all randomness is passed explicitly)")
    return generator


def _check_positive_count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _as_directions(directions: torch.Tensor, dimension: int, device: torch.device) -> torch.Tensor:
    """Validate unit directions of shape (k, d), (k, *event) or (d,) and return them as float64 (k, d)."""
    if not isinstance(directions, torch.Tensor):
        raise ValueError(f"directions must be a torch.Tensor, got {type(directions).__name__}")
    matrix = directions.to(device=device, dtype=torch.float64)
    if matrix.dim() == 1:
        matrix = matrix.unsqueeze(0)
    matrix = matrix.reshape(matrix.shape[0], -1)
    if matrix.shape[0] < 1 or matrix.shape[1] != dimension:
        raise ValueError(f"directions must have shape (k, {dimension}) with k >= 1, got {tuple(directions.shape)}")
    if not bool(torch.isfinite(matrix).all()):
        raise ValueError("directions contain non-finite values")
    norms = torch.linalg.vector_norm(matrix, dim=1)
    if bool((norms - 1.0).abs().max() > _UNIT_NORM_TOLERANCE):
        raise ValueError("directions must be unit vectors (each row of norm 1)")
    return matrix


def bonferroni(p_values: Sequence[float]) -> float:
    """Bonferroni combination ``min(1, k * min(p_values))`` of ``k`` p-values."""
    return min(1.0, len(p_values) * min(p_values))


def random_directions(
    number_of_directions: int, dimension: int, *, generator: torch.Generator, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Draw directions uniformly on the unit sphere of R^d.

    Parameters
    ----------
    number_of_directions : int
        ``k``.
    dimension : int
        ``d``.
    generator : torch.Generator
        Source of randomness; the draw is made on its device, then moved to ``device``.
    device : torch.device or str
        Device of the result.

    Returns
    -------
    Tensor, shape (k, d), float64
        Unit rows.
    """
    _check_positive_count(number_of_directions, "number_of_directions")
    _check_positive_count(dimension, "dimension")
    _check_generator(generator)
    gaussian = torch.randn(
        number_of_directions, dimension, generator=generator, dtype=torch.float64, device=generator.device
    )
    norms = torch.linalg.vector_norm(gaussian, dim=1, keepdim=True)
    return (gaussian / norms).to(device)


# ----------------------------------------------------------------------------------------------------------------
# Kolmogorov-Smirnov tests on projections
# ----------------------------------------------------------------------------------------------------------------


def _projected_normal_law(
    mean: torch.Tensor | float, covariance_or_std: torch.Tensor | float, directions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (k,) and standard deviation (k,) of ``<u_j, X>`` for ``X ~ N(mean, Sigma)`` and unit rows ``u_j``."""
    count, dimension = directions.shape
    device = directions.device
    mean_vector = torch.as_tensor(mean, dtype=torch.float64, device=device).reshape(-1)
    if mean_vector.numel() == 1:
        mean_vector = mean_vector.expand(dimension)
    if mean_vector.numel() != dimension:
        raise ValueError(f"mean must be a scalar or have {dimension} entries, got {mean_vector.numel()}")
    scale = torch.as_tensor(covariance_or_std, dtype=torch.float64, device=device)
    if not bool(torch.isfinite(mean_vector).all()) or not bool(torch.isfinite(scale).all()):
        raise ValueError("mean and covariance_or_std must be finite")
    if scale.numel() == 1:
        if float(scale.reshape(())) <= 0:
            raise ValueError("a scalar standard deviation must be > 0")
        stds = scale.reshape(()).expand(count)
    elif scale.dim() == 1 and scale.numel() == dimension:
        if bool((scale <= 0).any()):
            raise ValueError("per-coordinate standard deviations must be > 0")
        stds = torch.sqrt((directions**2 * scale**2).sum(dim=1))
    elif scale.shape == (dimension, dimension):
        if not torch.allclose(scale, scale.T):
            raise ValueError("the covariance matrix must be symmetric")
        variances = torch.einsum("ki,ij,kj->k", directions, scale, directions)
        if bool((variances <= 0).any()):
            raise ValueError("the covariance matrix gives a non-positive variance along a direction")
        stds = torch.sqrt(variances)
    else:
        raise ValueError(
            f"covariance_or_std must be a scalar std, a ({dimension},) vector of stds or a ({dimension}, {dimension}) "
            f"covariance matrix, got shape {tuple(scale.shape)}"
        )
    return directions @ mean_vector, stds


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float64).numpy()


def ks_one_sample_projection(
    samples: torch.Tensor,
    mean: torch.Tensor | float,
    covariance_or_std: torch.Tensor | float,
    directions: torch.Tensor,
) -> ProjectionTestResult:
    """One-sample KS test of projections of ``samples`` against the normal law ``N(mean, Sigma)``.

    For each unit direction ``u_j`` the projections ``<u_j, x_i>`` are compared with their implied law
    ``N(<u_j, mean>, u_j^T Sigma u_j)``; the ``k`` p-values are combined by Bonferroni.

    Parameters
    ----------
    samples : Tensor, shape (n, *event)
        The draws, ``n >= 2``, finite. The event is flattened to ``d`` coordinates.
    mean : Tensor of d entries (any shape, e.g. event) or float
        Mean of the reference normal law; a scalar is broadcast to all coordinates.
    covariance_or_std : float, Tensor of shape (), (d,) or (d, d)
        A scalar standard deviation (covariance ``std^2 I``), a vector of per-coordinate standard deviations
        (diagonal covariance) or a full covariance matrix.
    directions : Tensor, shape (k, d), (k, *event) or (d,)
        Unit directions.

    Returns
    -------
    ProjectionTestResult
        Per-direction statistics and p-values and their Bonferroni combination.

    Raises
    ------
    ValueError
        On malformed, non-finite or inconsistent inputs, non-unit directions or a non-positive variance.
    """
    matrix = _as_sample_matrix(samples, "samples")
    units = _as_directions(directions, matrix.shape[1], matrix.device)
    means, stds = _projected_normal_law(mean, covariance_or_std, units)
    projections = _to_numpy(matrix @ units.T)
    statistics, p_values = [], []
    for column, (location, scale) in enumerate(zip(_to_numpy(means), _to_numpy(stds), strict=True)):
        outcome = scipy_stats.kstest(projections[:, column], "norm", args=(float(location), float(scale)))
        statistics.append(float(outcome.statistic))
        p_values.append(float(outcome.pvalue))
    return ProjectionTestResult(max(statistics), bonferroni(p_values), tuple(statistics), tuple(p_values), units)


def ks_two_sample_projection(
    first: torch.Tensor,
    second: torch.Tensor,
    directions: torch.Tensor | None = None,
    *,
    number_of_directions: int = 8,
    generator: torch.Generator | None = None,
) -> ProjectionTestResult:
    """Two-sample KS test of projections, combined over directions by Bonferroni.

    Parameters
    ----------
    first : Tensor, shape (n, *event)
        First sample, ``n >= 2``, finite.
    second : Tensor, shape (m, *event)
        Second sample, independent of the first, same event shape and device, ``m >= 2``.
    directions : Tensor, shape (k, d), (k, *event) or (d,), optional
        Unit directions. If omitted, ``number_of_directions`` directions are drawn uniformly on the sphere from
        ``generator`` (which is then required).
    number_of_directions : int
        ``k`` when the directions are random.
    generator : torch.Generator, optional
        Source of the random directions.

    Returns
    -------
    ProjectionTestResult
        Per-direction two-sample KS statistics and p-values (scipy ``ks_2samp``, two-sided) and their Bonferroni
        combination.

    Raises
    ------
    ValueError
        On malformed inputs, or if neither ``directions`` nor ``generator`` is given.
    """
    first_matrix = _as_sample_matrix(first, "first")
    second_matrix = _as_sample_matrix(second, "second")
    _check_same_event(first, second)
    dimension = first_matrix.shape[1]
    if directions is None:
        if generator is None:
            raise ValueError("give either directions or a generator to draw random directions from")
        units = random_directions(number_of_directions, dimension, generator=generator, device=first_matrix.device)
    else:
        units = _as_directions(directions, dimension, first_matrix.device)
    first_projections = _to_numpy(first_matrix @ units.T)
    second_projections = _to_numpy(second_matrix @ units.T)
    statistics, p_values = [], []
    for column in range(units.shape[0]):
        outcome = scipy_stats.ks_2samp(first_projections[:, column], second_projections[:, column])
        statistics.append(float(outcome.statistic))
        p_values.append(float(outcome.pvalue))
    return ProjectionTestResult(max(statistics), bonferroni(p_values), tuple(statistics), tuple(p_values), units)


# ----------------------------------------------------------------------------------------------------------------
# Permutation tests (MMD, energy) on a pooled pairwise matrix
# ----------------------------------------------------------------------------------------------------------------


def _pairwise_squared_distances(pooled: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (N, N) between the rows of ``pooled`` (N, d), exact zeros on the diagonal."""
    centered = pooled - pooled.mean(dim=0, keepdim=True)
    norms = (centered**2).sum(dim=1)
    squared = (centered @ centered.T).mul_(-2.0).add_(norms[:, None]).add_(norms[None, :])  # in place: one (N, N)
    squared.clamp_(min=0.0)
    squared.fill_diagonal_(0.0)
    return squared


def _kth_smallest(values: torch.Tensor, rank: int) -> float:
    """The ``rank``-th smallest entry (1-based) of a flat tensor."""
    return float(values.kthvalue(rank).values)


def median_heuristic_bandwidth(squared_distances: torch.Tensor) -> float:
    """Median heuristic: the median Euclidean distance between distinct points of the pooled sample.

    Computed without copying the pairs out: the full matrix holds each distinct pair twice, which leaves the median
    unchanged, and its ``N`` diagonal zeros are the smallest entries, so they are skipped by offsetting the rank.
    For an even number of pairs the median is the mean of the two middle distances.

    Parameters
    ----------
    squared_distances : Tensor, shape (N, N)
        Pairwise squared distances of the pooled sample (zero diagonal, non-negative).

    Returns
    -------
    float
        ``median_{i<j} |z_i - z_j|`` (1.0 if all points coincide).
    """
    size = squared_distances.shape[0]
    flat = squared_distances.reshape(-1)
    pairs = size * (size - 1) // 2
    upper = math.sqrt(_kth_smallest(flat, size + 2 * (pairs // 2) + 1))
    median = upper if pairs % 2 == 1 else 0.5 * (math.sqrt(_kth_smallest(flat, size + 2 * (pairs // 2))) + upper)
    return median if median > 0 else 1.0


def _permutation_labels(size: int, first_size: int, permutations: int, generator: torch.Generator) -> torch.Tensor:
    """Indicators (P, N), float64, of the first arm under ``P`` uniformly random relabellings of the pooled sample."""
    keys = torch.rand(permutations, size, generator=generator, dtype=torch.float64, device=generator.device)
    order = keys.argsort(dim=1)
    labels = torch.zeros(permutations, size, dtype=torch.float64, device=generator.device)
    labels.scatter_(1, order[:, :first_size], 1.0)
    return labels


def _two_sample_quadratic_statistics(
    matrix: torch.Tensor, labels: torch.Tensor, within_weight_sign: float
) -> torch.Tensor:
    """``sign * (mean_{X, i!=j} M + mean_{Y, i!=j} M - 2 mean_{X x Y} M)`` for each labelling.

    With ``M`` a Gaussian Gram matrix and sign +1 this is the unbiased MMD²; with ``M`` the distance matrix and sign
    -1 it is the energy distance ``2 E|X-Y| - E|X-X'| - E|Y-Y'|`` (U-statistic form).

    Parameters
    ----------
    matrix : Tensor, shape (N, N)
        Symmetric pooled pairwise matrix.
    labels : Tensor, shape (P, N)
        Indicators of the first arm, each row with ``n`` ones.
    within_weight_sign : float
        +1 (MMD) or -1 (energy).

    Returns
    -------
    Tensor, shape (P,)
    """
    size = matrix.shape[0]
    first_size = int(labels[0].sum().item())
    second_size = size - first_size
    diagonal = matrix.diagonal()
    row_sums = matrix.sum(dim=1)
    total = row_sums.sum()
    chunk = max(1, _PERMUTATION_CHUNK_ELEMENTS // size)
    results = []
    for start in range(0, labels.shape[0], chunk):
        block = labels[start : start + chunk]  # (c, N)
        within_first = ((block @ matrix) * block).sum(dim=1)  # a^T M a
        cross_plus_within = block @ row_sums  # a^T M 1
        cross = cross_plus_within - within_first  # a^T M b
        within_second = total - 2.0 * cross_plus_within + within_first  # b^T M b
        first_diagonal = block @ diagonal
        second_diagonal = diagonal.sum() - first_diagonal
        mean_first = (within_first - first_diagonal) / (first_size * (first_size - 1))
        mean_second = (within_second - second_diagonal) / (second_size * (second_size - 1))
        mean_cross = cross / (first_size * second_size)
        results.append(within_weight_sign * (mean_first + mean_second - 2.0 * mean_cross))
    return torch.cat(results)


def _permutation_test(
    matrix: torch.Tensor, first_size: int, permutations: int, generator: torch.Generator, sign: float
) -> tuple[float, float]:
    """Observed statistic and permutation p-value of :func:`_two_sample_quadratic_statistics`."""
    size = matrix.shape[0]
    observed_labels = torch.zeros(1, size, dtype=torch.float64, device=matrix.device)
    observed_labels[0, :first_size] = 1.0
    observed = float(_two_sample_quadratic_statistics(matrix, observed_labels, sign)[0])
    labels = _permutation_labels(size, first_size, permutations, generator).to(matrix.device)
    permuted = _two_sample_quadratic_statistics(matrix, labels, sign)
    # a relabelling equal to the observed one must count as ">=" despite rounding
    tolerance = 1e-12 * max(1.0, abs(observed))
    exceed = int((permuted >= observed - tolerance).sum().item())
    return observed, (1 + exceed) / (1 + permutations)


def _pooled(first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, int]:
    first_matrix = _as_sample_matrix(first, "first")
    second_matrix = _as_sample_matrix(second, "second")
    _check_same_event(first, second)
    return torch.cat([first_matrix, second_matrix]), first_matrix.shape[0]


def mmd_test(
    first: torch.Tensor,
    second: torch.Tensor,
    *,
    permutations: int = 200,
    generator: torch.Generator,
    bandwidth: float | None = None,
) -> PermutationTestResult:
    """Gaussian-kernel maximum mean discrepancy test with a permutation p-value.

    The kernel is ``k(x, y) = exp(-|x - y|^2 / (2 bandwidth^2))``. By default the bandwidth is the **median
    heuristic on the pooled sample**: the median Euclidean distance between distinct points of ``first`` and
    ``second`` together (it is invariant under relabelling, so the permutation test stays exact). The statistic is
    the unbiased estimate of MMD² (may be negative). The pooled Gram matrix (N, N) is computed once, on the device
    of the inputs, and the permutations only relabel its rows: memory is O(N^2), fine for a few thousand samples
    per arm.

    Parameters
    ----------
    first : Tensor, shape (n, *event)
        First sample, ``n >= 2``, finite.
    second : Tensor, shape (m, *event)
        Second sample, independent of the first, same event shape and device, ``m >= 2``.
    permutations : int
        Number of random relabellings ``P``; the smallest attainable p-value is ``1 / (P + 1)``.
    generator : torch.Generator
        Source of the permutations.
    bandwidth : float, optional
        Kernel bandwidth (> 0); the median heuristic if omitted.

    Returns
    -------
    PermutationTestResult
        Observed unbiased MMD², permutation p-value, and the bandwidth used.

    Raises
    ------
    ValueError
        On malformed inputs, a missing generator, a non-positive bandwidth or number of permutations.
    """
    _check_generator(generator)
    _check_positive_count(permutations, "permutations")
    if bandwidth is not None and not (math.isfinite(bandwidth) and bandwidth > 0):
        raise ValueError(f"bandwidth must be a finite positive number, got {bandwidth!r}")
    pooled, first_size = _pooled(first, second)
    gram = _pairwise_squared_distances(pooled)
    used_bandwidth = median_heuristic_bandwidth(gram) if bandwidth is None else float(bandwidth)
    gram.mul_(-0.5 / used_bandwidth**2).exp_()
    observed, p_value = _permutation_test(gram, first_size, permutations, generator, sign=1.0)
    return PermutationTestResult(observed, p_value, permutations, used_bandwidth)


def energy_test(
    first: torch.Tensor, second: torch.Tensor, *, permutations: int = 200, generator: torch.Generator
) -> PermutationTestResult:
    """Energy distance test with a permutation p-value.

    The statistic is the energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` estimated with U-statistics
    (within-arm means over distinct pairs); it is zero in expectation iff the two laws are equal (finite first
    moments). The pooled distance matrix is computed once, on the device of the inputs.

    Parameters
    ----------
    first : Tensor, shape (n, *event)
        First sample, ``n >= 2``, finite.
    second : Tensor, shape (m, *event)
        Second sample, independent of the first, same event shape and device, ``m >= 2``.
    permutations : int
        Number of random relabellings ``P``.
    generator : torch.Generator
        Source of the permutations.

    Returns
    -------
    PermutationTestResult
        Observed energy distance and permutation p-value (``bandwidth`` is None).

    Raises
    ------
    ValueError
        On malformed inputs, a missing generator or a non-positive number of permutations.
    """
    _check_generator(generator)
    _check_positive_count(permutations, "permutations")
    pooled, first_size = _pooled(first, second)
    distances = _pairwise_squared_distances(pooled).sqrt_()
    observed, p_value = _permutation_test(distances, first_size, permutations, generator, sign=-1.0)
    return PermutationTestResult(observed, p_value, permutations)


# ----------------------------------------------------------------------------------------------------------------
# All tests at once
# ----------------------------------------------------------------------------------------------------------------


def compare_samplers(
    first: torch.Tensor,
    second: torch.Tensor,
    *,
    generator: torch.Generator,
    alpha: float = 0.01,
    permutations: int = 200,
    number_of_directions: int = 8,
) -> ComparisonReport:
    """Run the random-projection KS, MMD and energy tests on two samples and tabulate them.

    Parameters
    ----------
    first : Tensor, shape (n, *event)
        Draws of the first sampler, ``n >= 2``, finite.
    second : Tensor, shape (m, *event)
        Draws of the second sampler, drawn with independent randomness, same event shape and device.
    generator : torch.Generator
        Source of the random directions and permutations (used in that order).
    alpha : float
        Level at which each test is judged, in (0, 1).
    permutations : int
        Number of permutations of the MMD and energy tests.
    number_of_directions : int
        Number of random directions of the projected KS test.

    Returns
    -------
    ComparisonReport
        Rows ``ks_random_projections``, ``mmd``, ``energy``; call ``format()`` for a text table.

    Raises
    ------
    ValueError
        On malformed inputs, ``alpha`` outside (0, 1), or too few permutations to reject at ``alpha``.
    """
    if not (0.0 < alpha < 1.0):
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    _check_positive_count(permutations, "permutations")
    if 1.0 / (permutations + 1) > alpha:
        # A permutation p-value is at least 1 / (permutations + 1): with fewer permutations the MMD and energy rows
        # could never reject, and the report would look like three tests while being one.
        raise ValueError(
            f"{permutations} permutations cannot reach alpha = {alpha:g} (the smallest permutation p-value is "
            f"1 / {permutations + 1}); use at least {math.ceil(1 / alpha) - 1}"
        )
    _check_generator(generator)
    projection = ks_two_sample_projection(first, second, number_of_directions=number_of_directions, generator=generator)
    mmd = mmd_test(first, second, permutations=permutations, generator=generator)
    energy = energy_test(first, second, permutations=permutations, generator=generator)
    outcomes = (("ks_random_projections", projection), ("mmd", mmd), ("energy", energy))
    rows = tuple(
        TestRow(name, outcome.statistic, outcome.p_value, outcome.p_value <= alpha) for name, outcome in outcomes
    )
    return ComparisonReport(rows, alpha)
