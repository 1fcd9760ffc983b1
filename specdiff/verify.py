"""Verification rules for a window of drafted Gaussian steps: token (reflection or fresh residual) and block.

Every rule takes the drafted states, the draft and target means, the sigmas and **all its randomness as
arguments**, works on a batch, and returns the accepted length and the next state (DESIGN.md §4).

Shapes (B a batch, L the window, ``*event`` the state's shape):

- ``states`` (B, L+1, *event): ``states[:, 0]`` is the window root, ``states[:, i]`` was drafted from
  ``draft_means[:, i-1]`` with noise ``sigmas[:, i-1]``;
- ``draft_means`` (B, L, *event): draft means of steps 1..L (optionally (B, L+1, *event) with the draft mean of the
  bonus step too, used only to report its gap);
- ``target_means`` (B, L+1, *event): target means of steps 1..L+1, evaluated at ``states[:, 0..L]``; the last one
  serves the bonus step;
- ``sigmas`` (B, L+1) or (L+1,): the shared standard deviation of steps 1..L+1 (> 0: a deterministic step cannot
  be speculated, take it plainly);
- ``uniforms`` (B, L): the accept uniforms (token) or the ``eta_i`` (block), in [0, 1);
- ``residual_uniforms`` (B,): drive the 1-D inverse CDF of a residual draw, in [0, 1);
- ``residual_noise`` (B, *event): the standard normal noise of whichever happens, the residual draw's orthogonal
  part or the bonus step;
- ``lengths`` (B,) long, optional: per-row windows ``1 <= L_r <= L``. Row r is verified as a window of its first
  ``L_r`` steps, its bonus step is step ``L_r + 1`` (column ``L_r`` of ``target_means`` and ``sigmas``), and what lies
  beyond is ignored, so one call verifies a batch whose samples drafted different numbers of steps.

Inputs are checked for shapes and ranges; non-finite states or means are caught through the log ratios and gaps
they produce (small tensors), so validation does not cost passes over the full windows.

Log density ratios are computed in float64 as ``log r = <z, gap> - |gap|^2 / 2`` with ``z = (x - nu) / sigma`` and
``gap = (mu - nu) / sigma`` (DESIGN.md §2), never as a difference of two d-dimensional log-densities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from specdiff.residual import _expand, rank_one_frame, reflect, sample_weighted_residual
from theory.gaussian import log_residual_mass_from_log_weight

TokenResidual = Literal["reflection", "fresh"]
Rule = Literal["token-reflection", "token-residual", "block"]
RULES: tuple[Rule, ...] = ("token-reflection", "token-residual", "block")


@dataclass(frozen=True)
class VerificationResult:
    """Outcome of verifying one window for each row of a batch.

    Attributes
    ----------
    accepted : Tensor, shape (B,), long
        ``tau``: number of drafted steps kept (0..L).
    next_state : Tensor, shape (B, *event)
        The state after the kept steps: the bonus step's draw if ``tau == L``, else the residual draw at step
        ``tau + 1``.
    weights : Tensor, shape (B, L), float64
        Block rule: ``w_i = min(1, w_{i-1} r_i)``. Token rule: ``min(1, r_i)`` per step.
    stop_probs : Tensor, shape (B, L), float64
        Block rule: ``h_i``. Token rule: the acceptance probability ``min(1, r_i)`` of each step.
    deltas : Tensor, shape (B, L+1), float64
        ``delta_i = |mu_i - nu_i| / sigma_i`` for steps 1..L+1; the last column is NaN unless the draft mean of the
        bonus step was given.
    """

    accepted: torch.Tensor
    next_state: torch.Tensor
    weights: torch.Tensor
    stop_probs: torch.Tensor
    deltas: torch.Tensor


@dataclass(frozen=True)
class _Window:
    """Validated inputs with per-row sigmas and window lengths; ratios and gaps in float64."""

    states: torch.Tensor
    draft_means: torch.Tensor
    target_means: torch.Tensor
    sigmas: torch.Tensor  # (B, L+1), float64
    uniforms: torch.Tensor  # (B, L), float64
    residual_uniforms: torch.Tensor  # (B,), float64
    residual_noise: torch.Tensor
    lengths: torch.Tensor  # (B,) long, in 1..L: row r verifies its first lengths[r] steps
    valid: torch.Tensor  # (B, L) bool, position i < lengths[r]
    log_ratios: torch.Tensor  # (B, L), float64 (0 beyond the row's window)
    deltas: torch.Tensor  # (B, L+1), float64 (NaN beyond the row's window and at its bonus step)

    @property
    def window(self) -> int:
        return int(self.log_ratios.shape[1])


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _check_uniforms(values: torch.Tensor, shape: tuple[int, ...], name: str, device: torch.device) -> torch.Tensor:
    _require(tuple(values.shape) == shape, f"{name} must have shape {shape}, got {tuple(values.shape)}")
    values = values.to(device=device, dtype=torch.float64)
    _require(bool(((values >= 0) & (values < 1)).all()), f"{name} must lie in [0, 1) (no NaN)")
    return values


def _check_lengths(lengths: torch.Tensor | None, batch: int, window: int, device: torch.device) -> torch.Tensor:
    if lengths is None:
        return torch.full((batch,), window, dtype=torch.long, device=device)
    _require(
        isinstance(lengths, torch.Tensor) and tuple(lengths.shape) == (batch,) and not lengths.is_floating_point(),
        f"lengths must be an integer tensor of shape ({batch},)",
    )
    lengths = lengths.to(device=device, dtype=torch.long)
    _require(bool(((lengths >= 1) & (lengths <= window)).all()), f"lengths must lie in 1..{window}")
    return lengths


def _check_finite(*named: tuple[str, torch.Tensor]) -> None:
    """Name the first input with a NaN or inf (only run once a non-finite ratio or gap has been found)."""
    for name, tensor in named:
        _require(bool(torch.isfinite(tensor).all()), f"{name} contain NaN or inf")
    raise ValueError("the log density ratios overflow: states and means are too far apart for float64")


def _prepare(
    states: torch.Tensor,
    draft_means: torch.Tensor,
    target_means: torch.Tensor,
    sigmas: torch.Tensor,
    uniforms: torch.Tensor,
    residual_uniforms: torch.Tensor,
    residual_noise: torch.Tensor,
    lengths: torch.Tensor | None = None,
) -> _Window:
    _require(states.dim() >= 3, "states must have shape (B, L+1, *event) with at least one event dimension")
    batch, window = states.shape[0], states.shape[1] - 1
    event = tuple(states.shape[2:])
    _require(window >= 1, "a window needs at least one drafted step: states must have L+1 >= 2 entries")
    _require(
        tuple(target_means.shape) == (batch, window + 1, *event),
        f"target_means must have shape {(batch, window + 1, *event)}, got {tuple(target_means.shape)}",
    )
    _require(
        tuple(draft_means.shape) in ((batch, window, *event), (batch, window + 1, *event)),
        f"draft_means must have shape {(batch, window, *event)}, got {tuple(draft_means.shape)}",
    )
    _require(
        tuple(residual_noise.shape) == (batch, *event),
        f"residual_noise must have shape {(batch, *event)}, got {tuple(residual_noise.shape)}",
    )
    lengths = _check_lengths(lengths, batch, window, states.device)
    if sigmas.dim() == 1:
        _require(sigmas.shape[0] == window + 1, f"sigmas must have shape (L+1,) = ({window + 1},) or (B, L+1)")
        sigmas = sigmas.expand(batch, window + 1)
    _require(tuple(sigmas.shape) == (batch, window + 1), f"sigmas must have shape {(batch, window + 1)}")
    sigmas = sigmas.to(device=states.device, dtype=torch.float64)
    columns = torch.arange(window + 1, device=states.device)
    used = columns[None, :] <= lengths[:, None]  # steps 1..lengths[r] + 1 (the bonus step)
    used_sigmas = sigmas[used]
    _require(not bool(torch.isnan(used_sigmas).any()), "sigmas contain NaN")
    _require(bool((used_sigmas >= 0).all()), "sigmas must be >= 0")
    _require(
        bool((used_sigmas > 0).all()),
        "a step with sigma == 0 is deterministic and cannot be speculated: take that step plainly",
    )
    uniforms = _check_uniforms(uniforms, (batch, window), "uniforms", states.device)
    residual_uniforms = _check_uniforms(residual_uniforms, (batch,), "residual_uniforms", states.device)
    valid = columns[None, :window] < lengths[:, None]  # drafted steps 1..lengths[r]
    # Steps beyond a row's window get sigma 1 so that whatever they hold stays out of the way.
    sigmas = torch.where(used, sigmas, 1.0)

    # Offsets x_i - nu_i and gaps mu_i - nu_i of steps 1..L in float64 (mixed-dtype arithmetic promotes on the fly).
    drafts = draft_means[:, :window].to(torch.float64).flatten(2)
    offsets = states[:, 1:].flatten(2) - drafts
    gaps = target_means[:, :window].flatten(2) - drafts
    variances = sigmas[:, :window].square()
    squared_gaps = torch.linalg.vecdot(gaps, gaps)
    # log r_i = log P_i(X_i) / Q_i(X_i) = <z, gap> - |gap|^2 / 2 with z, gap in units of sigma_i   (DESIGN.md §2)
    log_ratios = (torch.linalg.vecdot(offsets, gaps) - 0.5 * squared_gaps) / variances
    step_deltas = (squared_gaps / variances).sqrt()
    finite = torch.isfinite(log_ratios) & torch.isfinite(step_deltas)
    if not bool((finite | ~valid).all()):
        _check_finite(("states", states), ("draft_means", draft_means), ("target_means", target_means))
    deltas = torch.full((batch, window + 1), math.nan, dtype=torch.float64, device=states.device)
    deltas[:, :window] = step_deltas.masked_fill(~valid, math.nan)
    if draft_means.shape[1] == window + 1:
        rows = torch.arange(batch, device=states.device)
        bonus_gap = (target_means[rows, lengths].double() - draft_means[rows, lengths].double()) / _expand(
            sigmas[rows, lengths], residual_noise
        )
        deltas[rows, lengths] = bonus_gap.flatten(1).norm(dim=1)
    return _Window(
        states=states,
        draft_means=draft_means,
        target_means=target_means,
        sigmas=sigmas,
        uniforms=uniforms,
        residual_uniforms=residual_uniforms,
        residual_noise=residual_noise,
        lengths=lengths,
        valid=valid,
        log_ratios=log_ratios.masked_fill(~valid, 0.0),
        deltas=deltas,
    )


def _rows(tensor: torch.Tensor, rows: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """``tensor[rows, steps]`` for a (B, L, ...) tensor."""
    return tensor[rows, steps]


def _bonus_or_residual(
    window: _Window, accepted: torch.Tensor, log_weight: torch.Tensor, *, reflection: bool
) -> torch.Tensor:
    """Next state: the bonus step where ``accepted`` is the row's whole window, else a draw at step ``accepted + 1``.

    ``log_weight`` (B,) is the weight ``w_tau`` of the residual (0 for the token rule).
    """
    rows = torch.arange(accepted.shape[0], device=accepted.device)
    next_state = torch.empty_like(window.residual_noise, dtype=window.states.dtype)
    full = accepted == window.lengths
    if bool(full.any()):
        bonus_rows = rows[full]
        bonus_step = window.lengths[full]
        mean = window.target_means[bonus_rows, bonus_step]
        sigma = window.sigmas[bonus_rows, bonus_step]
        next_state[bonus_rows] = (mean.double() + _expand(sigma, mean) * window.residual_noise[bonus_rows].double()).to(
            next_state.dtype
        )
    if not bool(full.all()):
        stop_rows = rows[~full]
        step = accepted[~full]  # the rejected step is step + 1, at index `step`
        target_mean = _rows(window.target_means, stop_rows, step)
        draft_mean = _rows(window.draft_means, stop_rows, step)
        sigma = window.sigmas[stop_rows, step]
        if reflection:
            noise = (_rows(window.states, stop_rows, step + 1).double() - draft_mean.double()) / _expand(
                sigma, draft_mean
            )
            frame = rank_one_frame(target_mean, draft_mean, sigma)
            reflected = reflect(noise, frame.direction)
            sample = target_mean.double() + _expand(sigma, reflected) * reflected
            next_state[stop_rows] = sample.to(next_state.dtype)
        else:
            next_state[stop_rows] = sample_weighted_residual(
                target_mean,
                draft_mean,
                sigma,
                log_weight[~full],
                uniforms=window.residual_uniforms[~full],
                noise=window.residual_noise[stop_rows],
            )
    _require(bool(torch.isfinite(next_state).all()), "target_means or residual_noise contain NaN or inf")
    return next_state


def _beyond_window(values: torch.Tensor, window: _Window, fill: float) -> torch.Tensor:
    """``values`` (B, L) with ``fill`` at the positions beyond each row's window."""
    return values.masked_fill(~window.valid, fill)


def token_verify(
    states: torch.Tensor,
    draft_means: torch.Tensor,
    target_means: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    uniforms: torch.Tensor,
    residual_uniforms: torch.Tensor,
    residual_noise: torch.Tensor,
    residual: TokenResidual = "reflection",
    lengths: torch.Tensor | None = None,
) -> VerificationResult:
    """Step-by-step verification: accept step i with probability ``min(1, r_i)``, stop at the first rejection.

    On a rejection at step i the next state is drawn from ``max(P_i - Q_i, 0) / TV``: by reflecting the draft noise
    (``residual="reflection"``, De Bortoli et al.: ``mu + sigma (z - 2 <e, z> e)``, costs nothing, uses neither
    ``residual_uniforms`` nor ``residual_noise``) or by a fresh draw (``residual="fresh"``). If all L steps are
    accepted, the bonus step is ``target_means[:, L] + sigmas[:, L] * residual_noise``.

    Parameters
    ----------
    states, draft_means, target_means, sigmas, uniforms, residual_uniforms, residual_noise
        See the module docstring for shapes.
    residual : {"reflection", "fresh"}
    lengths : Tensor, shape (B,), long, optional
        Per-row windows in 1..L (default: L for every row). Row r verifies only its first ``lengths[r]`` steps and
        its bonus step is step ``lengths[r] + 1`` (``target_means[r, lengths[r]]``, ``sigmas[r, lengths[r]]``);
        entries beyond are ignored.

    Returns
    -------
    VerificationResult
        ``weights`` and ``stop_probs`` both hold the per-step acceptance probabilities ``min(1, r_i)`` (NaN beyond
        each row's window).
    """
    if residual not in ("reflection", "fresh"):
        raise ValueError(f"residual must be 'reflection' or 'fresh', got {residual!r}")
    window = _prepare(states, draft_means, target_means, sigmas, uniforms, residual_uniforms, residual_noise, lengths)
    log_accept = window.log_ratios.clamp(max=0.0)
    # accept iff u < min(1, r), compared in log space (log 0 = -inf is always accepted unless r = 0).
    accepts = (torch.log(window.uniforms) < log_accept) & window.valid
    accepted = torch.cumprod(accepts.long(), dim=1).sum(dim=1)
    zero_log_weight = torch.zeros(accepted.shape, dtype=torch.float64, device=accepted.device)
    next_state = _bonus_or_residual(window, accepted, zero_log_weight, reflection=residual == "reflection")
    accept_prob = _beyond_window(log_accept.exp(), window, math.nan)
    return VerificationResult(
        accepted=accepted,
        next_state=next_state,
        weights=accept_prob,
        stop_probs=accept_prob,
        deltas=window.deltas,
    )


def _log_stop_probs(log_weights: torch.Tensor, deltas: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``log h_i`` for i = 1..L (DESIGN.md §4); row r uses only its first ``lengths[r]`` positions.

    ``h_i = R(w_i, delta_{i+1}) / (R(w_i, delta_{i+1}) + 1 - w_i)`` for i < L (1 where the denominator is 0) and
    ``h_L = w_L``. ``log_weights`` (B, L) are ``log w_1..w_L``; ``deltas`` (B, L+1) hold ``delta_1..``; positions
    beyond a row's window are returned as they come (the caller masks them).
    """
    log_stop = log_weights.clone()
    positions = torch.arange(log_weights.shape[1], device=log_weights.device)
    inner = positions[None, :] < lengths[:, None] - 1  # i < L: the next step's gap is known
    if bool(inner.any()):
        log_w = log_weights[inner].detach().cpu().numpy()
        next_delta = deltas[:, 1:][inner].detach().cpu().numpy()
        log_mass = log_residual_mass_from_log_weight(log_w, next_delta)
        with np.errstate(divide="ignore", invalid="ignore"):  # -inf - -inf where h_i is set to 1 below
            log_complement = np.log(-np.expm1(log_w))  # log(1 - w), -inf at w = 1
            denominator = np.logaddexp(log_mass, log_complement)
            log_h = np.where(np.isneginf(denominator), 0.0, log_mass - denominator)
        log_stop[inner] = torch.from_numpy(log_h).to(log_weights.device)
    return log_stop


def _last_success(success: torch.Tensor) -> torch.Tensor:
    """``tau = max{i : success_i}`` over i = 1..L, 0 if none: (B, L) bool -> (B,) long."""
    positions = torch.arange(1, success.shape[1] + 1, device=success.device)
    return (success.long() * positions).max(dim=1).values


def block_verify(
    states: torch.Tensor,
    draft_means: torch.Tensor,
    target_means: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    uniforms: torch.Tensor,
    residual_uniforms: torch.Tensor,
    residual_noise: torch.Tensor,
    lengths: torch.Tensor | None = None,
) -> VerificationResult:
    """Block (chunk) verification of Sun et al. adapted to Gaussian transitions (DESIGN.md §4).

    ``w_0 = 1, w_i = min(1, w_{i-1} r_i)``; ``tau = max{i : eta_i < h_i}`` (0 if none: the last success, not the
    first failure); keep ``X_1..X_tau``; the next state is the bonus step if ``tau == L``, else a fresh draw from
    ``max(w_tau P_{tau+1} - Q_{tau+1}, 0) / R(w_tau, delta_{tau+1})``. With ``L = 1`` this is the token rule with a
    fresh residual.

    Parameters
    ----------
    states, draft_means, target_means, sigmas, uniforms, residual_uniforms, residual_noise
        See the module docstring for shapes; ``uniforms`` are the ``eta_i``.
    lengths : Tensor, shape (B,), long, optional
        Per-row windows, as in :func:`token_verify` (row r is verified as a window of ``lengths[r]`` steps).

    Returns
    -------
    VerificationResult
        ``weights`` and ``stop_probs`` are NaN beyond each row's window.
    """
    window = _prepare(states, draft_means, target_means, sigmas, uniforms, residual_uniforms, residual_noise, lengths)
    # log w_i = min(0, log w_{i-1} + log r_i): a walk reflected at 0, computed by a running loop over the window.
    log_weights = torch.empty_like(window.log_ratios)
    running = torch.zeros_like(window.log_ratios[:, 0])
    for i in range(window.window):
        running = (running + window.log_ratios[:, i]).clamp(max=0.0)
        log_weights[:, i] = running
    log_stop = _beyond_window(_log_stop_probs(log_weights, window.deltas, window.lengths), window, -math.inf)
    # eta_i < h_i (strict: a stop with h_i = 0 has an empty residual); tau = the last such i, 0 if none.
    accepted = _last_success(torch.log(window.uniforms) < log_stop)
    rows = torch.arange(accepted.shape[0], device=accepted.device)
    padded = torch.cat([torch.zeros_like(log_weights[:, :1]), log_weights], dim=1)
    residual_log_weight = padded[rows, accepted]  # log w_tau, with w_0 = 1
    next_state = _bonus_or_residual(window, accepted, residual_log_weight, reflection=False)
    return VerificationResult(
        accepted=accepted,
        next_state=next_state,
        weights=_beyond_window(log_weights.exp(), window, math.nan),
        stop_probs=_beyond_window(log_stop.exp(), window, math.nan),
        deltas=window.deltas,
    )


def apply_rule(
    rule: Rule,
    states: torch.Tensor,
    draft_means: torch.Tensor,
    target_means: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    uniforms: torch.Tensor,
    residual_uniforms: torch.Tensor,
    residual_noise: torch.Tensor,
    lengths: torch.Tensor | None = None,
) -> VerificationResult:
    """Verify a window with the rule named ``rule``: "token-reflection", "token-residual" or "block".

    Same arguments and result as ``token_verify`` / ``block_verify``.
    """
    randomness = {"uniforms": uniforms, "residual_uniforms": residual_uniforms, "residual_noise": residual_noise}
    if rule == "block":
        return block_verify(states, draft_means, target_means, sigmas, lengths=lengths, **randomness)
    if rule in ("token-reflection", "token-residual"):
        residual: TokenResidual = "reflection" if rule == "token-reflection" else "fresh"
        return token_verify(states, draft_means, target_means, sigmas, residual=residual, lengths=lengths, **randomness)
    raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
