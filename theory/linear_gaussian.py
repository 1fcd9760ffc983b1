"""Exact marginals of a discretized reverse chain with affine means (linear-Gaussian data, docs/design.md §5).

The chain ``x_{k+1} = A_k x_k + b_k + sigma_k xi_k`` (``xi_k ~ N(0, I_d)``, ``k = 0..N-1``) started at
``x_0 ~ N(m_0, S_0)`` stays Gaussian: ``m_{k+1} = A_k m_k + b_k`` and ``S_{k+1} = A_k S_k A_k^T + sigma_k^2 I``.
These closed forms are the one-sample reference against which samplers are tested.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class GaussianMarginals:
    """Marginal laws ``x_k ~ N(means[k], covariances[k])`` of the chain, ``k = 0..N`` (0 = initial state).

    Attributes
    ----------
    means : ndarray, shape (N + 1, d)
    covariances : ndarray, shape (N + 1, d, d)
    """

    means: FloatArray
    covariances: FloatArray


@dataclass(frozen=True)
class IsotropicMarginals:
    """Marginals of an isotropic chain: ``x_k ~ N(means[k], variances[k] I_d)``.

    Attributes
    ----------
    means : ndarray, shape (N + 1, d)
    variances : ndarray, shape (N + 1,)
    """

    means: FloatArray
    variances: FloatArray


def _check_finite(array: FloatArray, name: str) -> FloatArray:
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite")
    return array


def _transition_matrix(value: npt.ArrayLike, dimension: int, step: int) -> FloatArray:
    matrix = np.asarray(value, dtype=np.float64)
    if matrix.ndim == 0:
        matrix = matrix * np.eye(dimension)
    if matrix.shape != (dimension, dimension):
        raise ValueError(f"A[{step}] must be a scalar or a ({dimension}, {dimension}) matrix, got {matrix.shape}")
    return _check_finite(matrix, f"A[{step}]")


def _check_chain(
    transitions: Sequence[npt.ArrayLike], offsets: npt.ArrayLike, sigmas: npt.ArrayLike, dimension: int
) -> tuple[FloatArray, FloatArray]:
    steps = len(transitions)
    offsets_array = _check_finite(np.asarray(offsets, dtype=np.float64), "offsets")
    sigmas_array = _check_finite(np.asarray(sigmas, dtype=np.float64), "sigmas")
    if offsets_array.shape != (steps, dimension):
        raise ValueError(f"offsets must have shape ({steps}, {dimension}), got {offsets_array.shape}")
    if sigmas_array.shape != (steps,):
        raise ValueError(f"sigmas must have shape ({steps},), got {sigmas_array.shape}")
    if np.any(sigmas_array < 0):
        raise ValueError("sigmas must be >= 0")
    return offsets_array, sigmas_array


def chain_marginals(
    initial_mean: npt.ArrayLike,
    initial_covariance: npt.ArrayLike,
    transitions: Sequence[npt.ArrayLike],
    offsets: npt.ArrayLike,
    sigmas: npt.ArrayLike,
) -> GaussianMarginals:
    """Exact marginals of ``x_{k+1} = A_k x_k + b_k + sigma_k xi_k``.

    Parameters
    ----------
    initial_mean : array_like, shape (d,)
        ``m_0``.
    initial_covariance : array_like, shape (d, d)
        ``S_0`` (symmetric positive semi-definite; zero for a fixed start).
    transitions : sequence of N scalars or (d, d) arrays
        ``A_k``; a scalar ``a`` means ``a I``.
    offsets : array_like, shape (N, d)
        ``b_k``.
    sigmas : array_like, shape (N,)
        Noise scales ``sigma_k >= 0``.

    Returns
    -------
    GaussianMarginals
        ``means`` (N + 1, d) and ``covariances`` (N + 1, d, d).
    """
    mean = _check_finite(np.asarray(initial_mean, dtype=np.float64), "initial_mean")
    if mean.ndim != 1:
        raise ValueError(f"initial_mean must be a 1-D array, got shape {mean.shape}")
    dimension = mean.size
    covariance = _check_finite(np.asarray(initial_covariance, dtype=np.float64), "initial_covariance")
    if covariance.shape != (dimension, dimension):
        raise ValueError(f"initial_covariance must have shape ({dimension}, {dimension}), got {covariance.shape}")
    if not np.allclose(covariance, covariance.T):
        raise ValueError("initial_covariance must be symmetric")
    offsets_array, sigmas_array = _check_chain(transitions, offsets, sigmas, dimension)
    steps = len(transitions)
    means = np.empty((steps + 1, dimension))
    covariances = np.empty((steps + 1, dimension, dimension))
    means[0], covariances[0] = mean, covariance
    for k in range(steps):
        matrix = _transition_matrix(transitions[k], dimension, k)
        means[k + 1] = matrix @ means[k] + offsets_array[k]
        # S_{k+1} = A S_k A^T + sigma_k^2 I, symmetrized against rounding drift.
        propagated = matrix @ covariances[k] @ matrix.T + sigmas_array[k] ** 2 * np.eye(dimension)
        covariances[k + 1] = 0.5 * (propagated + propagated.T)
    return GaussianMarginals(means=means, covariances=covariances)


def isotropic_chain_marginals(
    initial_mean: npt.ArrayLike,
    initial_scale: float,
    transitions: npt.ArrayLike,
    offsets: npt.ArrayLike,
    sigmas: npt.ArrayLike,
) -> IsotropicMarginals:
    """Marginals of a chain with scalar ``A_k`` and ``S_0 = initial_scale^2 I``: per-step scalar variances.

    Parameters
    ----------
    initial_mean : array_like, shape (d,)
    initial_scale : float
        ``s_0 >= 0``.
    transitions : array_like, shape (N,)
        Scalars ``a_k``.
    offsets : array_like, shape (N, d)
    sigmas : array_like, shape (N,)

    Returns
    -------
    IsotropicMarginals
        ``variances[k+1] = a_k^2 variances[k] + sigma_k^2``, ``variances[0] = s_0^2``.
    """
    mean = _check_finite(np.asarray(initial_mean, dtype=np.float64), "initial_mean")
    if mean.ndim != 1:
        raise ValueError(f"initial_mean must be a 1-D array, got shape {mean.shape}")
    scales = _check_finite(np.asarray(transitions, dtype=np.float64), "transitions")
    if scales.ndim != 1:
        raise ValueError(f"transitions must be a 1-D array of scalars, got shape {scales.shape}")
    if not np.isfinite(initial_scale) or initial_scale < 0:
        raise ValueError(f"initial_scale must be finite and >= 0, got {initial_scale!r}")
    offsets_array, sigmas_array = _check_chain(list(scales), offsets, sigmas, mean.size)
    steps = scales.size
    means = np.empty((steps + 1, mean.size))
    variances = np.empty(steps + 1)
    means[0], variances[0] = mean, float(initial_scale) ** 2
    for k in range(steps):
        means[k + 1] = scales[k] * means[k] + offsets_array[k]
        variances[k + 1] = scales[k] ** 2 * variances[k] + sigmas_array[k] ** 2
    return IsotropicMarginals(means=means, variances=variances)
