"""Verification rules for a window of drafted Gaussian steps: token (reflection or fresh residual) and block.

Every rule takes the drafted window and **all its randomness as arguments**, works on a batch, and returns the
accepted length and the next state. The rules are data (:class:`TokenRule`, :class:`BlockRule`); the negative
controls of the exactness checks are named variants of the block rule in :data:`CONTROL_RULES`, passed to the same
verifier, so that nothing has to patch this module to get a wrong rule.

Shapes (B a batch, L the window, ``*event`` the state's shape), bundled in :class:`Window` and
:class:`WindowRandomness`:

- ``states`` (B, L+1, *event): ``states[:, 0]`` is the window root, ``states[:, i]`` was drafted from
  ``draft_means[:, i-1]`` with noise ``sigmas[:, i-1]``;
- ``draft_means`` (B, L, *event): draft means of steps 1..L;
- ``target_means`` (B, L+1, *event): target means of steps 1..L+1, evaluated at ``states[:, 0..L]``; the last one
  serves the bonus step;
- ``sigmas`` (B, L+1) float64: the shared standard deviation of steps 1..L+1;
- ``lengths`` (B,) long: row r verifies its first ``L_r`` steps and its bonus step is step ``L_r + 1`` (column
  ``L_r`` of ``target_means`` and ``sigmas``); whatever lies beyond is ignored, so one call verifies a batch whose
  rows drafted different numbers of steps. ``L_r = 0`` (allowed inside the sampler) makes the next state the bonus
  step of the root, a plain step;
- ``uniforms`` (B, L): the accept uniforms (token) or the ``eta_i`` (block), in [0, 1);
- ``residual_uniforms`` (B,): drive the 1-D inverse CDF of a residual draw, in [0, 1);
- ``residual_noise`` (B, *event): the standard normal noise of whichever happens, the residual draw's orthogonal
  part or the bonus step.

:func:`verify` is the computation itself: a fixed sequence of tensor operations with no host synchronization and no
data-dependent Python control flow, which the sampler calls every round. :func:`token_verify`, :func:`block_verify`
and :func:`apply_rule` are the checked public entry points: they validate shapes and ranges first (which reads
tensors on the host), then call :func:`verify`.

Log density ratios are computed in float64 as ``log r = <z, gap> - |gap|^2 / 2`` with ``z = (x - nu) / sigma`` and
``gap = (mu - nu) / sigma`` (the rank-1 reduction), never as a difference of two d-dimensional log-densities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from specdiff.residual import _expand, gaussian_step, rank_one_frame, reflect, weighted_residual_from_target
from specdiff.residual_law import log_residual_mass

TokenResidual = Literal["reflection", "fresh"]
Rule = Literal["token-reflection", "token-residual", "block"]
RULES: tuple[Rule, ...] = ("token-reflection", "token-residual", "block")


@dataclass(frozen=True)
class TokenRule:
    """Step-by-step verification: accept step i with probability ``min(1, r_i)``, stop at the first rejection.

    Attributes
    ----------
    residual : {"reflection", "fresh"}
        How a rejected step is redrawn from ``max(P - Q, 0) / TV``: by reflecting the draft noise (De Bortoli et al.,
        free, tied to the draft noise) or by a fresh draw.
    """

    residual: TokenResidual = "reflection"

    @property
    def name(self) -> str:
        return "token-reflection" if self.residual == "reflection" else "token-residual"


@dataclass(frozen=True)
class BlockRule:
    """Block (chunk) verification of Sun et al. for Gaussian steps, and its deliberately wrong variants.

    The default instance is the exact rule. Each other field value is one departure from it, used as a negative
    control by the exactness checks (the names are those of ``proofs.discrete``).

    Attributes
    ----------
    name : str
    stop_weight : {"current", "lagged"}
        ``h_i`` from ``w_i`` (exact) or from ``w_{i-1}`` (control "lagged-weight"; ``h_L = w_L`` is kept).
    stopping : {"last-success", "first-failure"}
        ``tau = max{i : eta_i < h_i}`` (exact) or one less than the first failure (control "first-failure").
    residual : {"weighted", "unweighted", "reflection"}
        The residual ``max(w_tau P - Q, 0)`` (exact), ``max(P - Q, 0)`` (control "unweighted-residual") or the token
        rule's reflection (control "reflection-in-block").
    accept_always : bool
        Every drafted step kept (control "accept-always").
    """

    name: str = "block"
    stop_weight: Literal["current", "lagged"] = "current"
    stopping: Literal["last-success", "first-failure"] = "last-success"
    residual: Literal["weighted", "unweighted", "reflection"] = "weighted"
    accept_always: bool = False


VerificationRule = TokenRule | BlockRule

#: The exact rules by name.
NAMED_RULES: dict[str, VerificationRule] = {
    "token-reflection": TokenRule("reflection"),
    "token-residual": TokenRule("fresh"),
    "block": BlockRule(),
}

#: The negative controls (docs/design.md §5): wrong variants of the block rule that exactness checks must reject.
CONTROL_RULES: dict[str, BlockRule] = {
    "unweighted-residual": BlockRule("unweighted-residual", residual="unweighted"),
    "reflection-in-block": BlockRule("reflection-in-block", residual="reflection"),
    "lagged-weight": BlockRule("lagged-weight", stop_weight="lagged"),
    "first-failure": BlockRule("first-failure", stopping="first-failure"),
    "accept-always": BlockRule("accept-always", accept_always=True),
}


@dataclass(frozen=True)
class RuleChoice:
    """Token-reflection or block for each row and round, as the window policy chooses (``rule="adaptive"`` of the
    samplers; see :class:`specdiff.policies.AdaptiveWindow`). Every round is exact under either rule, and the choice
    is made from the past, so the mixture is exact too."""

    name: str = "adaptive"
    token: TokenRule = TokenRule("reflection")
    block: BlockRule = BlockRule()


def resolve_rule(rule: str | VerificationRule) -> VerificationRule:
    """The rule object for a name of :data:`RULES` or :data:`CONTROL_RULES`, or the rule object itself."""
    if isinstance(rule, TokenRule | BlockRule):
        return rule
    if isinstance(rule, str) and rule in NAMED_RULES:
        return NAMED_RULES[rule]
    if isinstance(rule, str) and rule in CONTROL_RULES:
        return CONTROL_RULES[rule]
    raise ValueError(f"rule must be one of {RULES} (or a control of {tuple(CONTROL_RULES)}), got {rule!r}")


@dataclass(frozen=True)
class Window:
    """A drafted window for each row of a batch (shapes in the module docstring).

    Attributes
    ----------
    states : Tensor, shape (B, L+1, *event)
    draft_means : Tensor, shape (B, L, *event)
    target_means : Tensor, shape (B, L+1, *event)
    sigmas : Tensor, shape (B, L+1), float64
    lengths : Tensor, shape (B,), long, in 0..L
    """

    states: torch.Tensor
    draft_means: torch.Tensor
    target_means: torch.Tensor
    sigmas: torch.Tensor
    lengths: torch.Tensor

    @property
    def width(self) -> int:
        """L, the number of drafted columns."""
        return int(self.draft_means.shape[1])


@dataclass(frozen=True)
class WindowRandomness:
    """Everything random that verifying a :class:`Window` uses.

    Attributes
    ----------
    uniforms : Tensor, shape (B, L), float64 in [0, 1)
    residual_uniforms : Tensor, shape (B,), float64 in [0, 1)
    residual_noise : Tensor, shape (B, *event)
    """

    uniforms: torch.Tensor
    residual_uniforms: torch.Tensor
    residual_noise: torch.Tensor


@dataclass(frozen=True)
class VerificationResult:
    """Outcome of verifying one window for each row of a batch.

    Attributes
    ----------
    accepted : Tensor, shape (B,), long
        ``tau``: number of drafted steps kept (0..L_r).
    next_state : Tensor, shape (B, *event)
        The state after the kept steps: the bonus step's draw if ``tau == L_r``, else the residual draw at step
        ``tau + 1``.
    weights : Tensor, shape (B, L), float64
        Block rule: ``w_i = min(1, w_{i-1} r_i)``. Token rule: ``min(1, r_i)`` per step. NaN beyond each row's window.
    stop_probs : Tensor, shape (B, L), float64
        Block rule: ``h_i``. Token rule: the acceptance probability ``min(1, r_i)`` of each step. NaN beyond.
    deltas : Tensor, shape (B, L), float64
        ``delta_i = |mu_i - nu_i| / sigma_i`` of steps 1..L; NaN beyond each row's window.
    """

    accepted: torch.Tensor
    next_state: torch.Tensor
    weights: torch.Tensor
    stop_probs: torch.Tensor
    deltas: torch.Tensor


# ---------------------------------------------------------------------------------------------------------------
# The computation (no checks, no host synchronization)
# ---------------------------------------------------------------------------------------------------------------


def take_column(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``tensor[r, index[r]]`` for every row r of a (B, W, ...) tensor, by a gather (static shapes, no host reads)."""
    gather_index = index.reshape((-1,) + (1,) * (tensor.dim() - 1)).expand(-1, 1, *tensor.shape[2:])
    return tensor.gather(1, gather_index).squeeze(1)


@dataclass(frozen=True)
class _Ratios:
    """Per-step log ratios and gaps of a window in float64, (B, L) each; ``valid`` marks steps 1..L_r."""

    log_ratios: torch.Tensor  # 0 beyond the row's window
    deltas: torch.Tensor  # NaN beyond the row's window
    valid: torch.Tensor


def _log_ratios(window: Window) -> _Ratios:
    """``log r_i = <z_i, gap_i> - |gap_i|^2 / 2`` in units of sigma_i, and ``delta_i = |gap_i|`` (rank-1 reduction)."""
    width = window.width
    drafts = window.draft_means.flatten(2).double()
    offsets = window.states[:, 1:].flatten(2) - drafts
    gaps = window.target_means[:, :width].flatten(2) - drafts
    variances = window.sigmas[:, :width].square()
    squared_gaps = torch.linalg.vecdot(gaps, gaps)
    log_ratios = (torch.linalg.vecdot(offsets, gaps) - 0.5 * squared_gaps) / variances
    valid = torch.arange(width, device=window.lengths.device) < window.lengths[:, None]
    deltas = (squared_gaps / variances).sqrt()
    return _Ratios(log_ratios.masked_fill(~valid, 0.0), deltas.masked_fill(~valid, math.nan), valid)


def _block_log_weights(log_ratios: torch.Tensor) -> torch.Tensor:
    """``log w_i = min(0, log w_{i-1} + log r_i)``, ``w_0 = 1``, for a whole window at once.

    The walk reflected at 0 is ``S_i - max(0, max_{j <= i} S_j)`` with ``S`` the cumulative log ratios.
    """
    cumulative = log_ratios.cumsum(dim=1)
    return cumulative - cumulative.cummax(dim=1).values.clamp(min=0.0)


def _block_log_stop_probs(log_weights: torch.Tensor, deltas: torch.Tensor, window: Window) -> torch.Tensor:
    """``log h_i``: ``h_i = R(w_i, delta_{i+1}) / (R(w_i, delta_{i+1}) + 1 - w_i)`` for i < L_r (1 where the
    denominator is 0) and ``h_{L_r} = w_{L_r}`` (docs/design.md §3.3). Positions beyond the row's window are not masked
    here."""
    next_deltas = torch.cat([deltas[:, 1:], torch.zeros_like(deltas[:, :1])], dim=1).nan_to_num(0.0)
    log_mass = log_residual_mass(log_weights, next_deltas)
    log_complement = torch.log(-torch.expm1(log_weights))  # log(1 - w), -inf at w = 1
    denominator = torch.logaddexp(log_mass, log_complement)
    inner = torch.where(torch.isneginf(denominator), 0.0, log_mass - denominator)
    last = torch.arange(window.width, device=log_weights.device) == window.lengths[:, None] - 1
    return torch.where(last, log_weights, inner)


def _last_success(success: torch.Tensor) -> torch.Tensor:
    """``tau = max{i : success_i}`` over i = 1..L, 0 if none: (B, L) bool -> (B,) long."""
    positions = torch.arange(1, success.shape[1] + 1, device=success.device)
    return (success.long() * positions).amax(dim=1)


def _first_failure(success: torch.Tensor) -> torch.Tensor:
    """The number of leading successes: (B, L) bool -> (B,) long."""
    return success.long().cumprod(dim=1).sum(dim=1)


def _next_state(
    window: Window, randomness: WindowRandomness, accepted: torch.Tensor, residual: tuple[str, torch.Tensor]
) -> torch.Tensor:
    """The bonus step where ``accepted == L_r``, else a draw at step ``accepted + 1``.

    ``residual`` is ``("reflection", _)`` or ``("weighted", log w_tau (B,))``. Every row computes both branches (static
    shapes); ``torch.where`` picks one.
    """
    bonus_mean = take_column(window.target_means, window.lengths)
    bonus_sigma = take_column(window.sigmas, window.lengths)
    bonus = gaussian_step(bonus_mean, bonus_sigma, randomness.residual_noise)
    if window.width == 0:
        return bonus
    step = accepted.clamp(max=window.width - 1)  # the rejected step is step + 1, at column `step`
    target_mean, draft_mean = take_column(window.target_means, step), take_column(window.draft_means, step)
    sigma = take_column(window.sigmas, step)
    kind, log_weight = residual
    if kind == "reflection":
        frame = rank_one_frame(target_mean, draft_mean, sigma)
        noise = (take_column(window.states, step + 1).double() - draft_mean.double()) / _expand(sigma, draft_mean)
        drawn = (target_mean.double() + _expand(sigma, target_mean) * reflect(noise, frame.direction)).to(bonus.dtype)
    else:
        drawn = weighted_residual_from_target(
            target_mean, draft_mean, sigma, log_weight, randomness.residual_uniforms, randomness.residual_noise
        )
    return torch.where(_expand(accepted == window.lengths, bonus), bonus, drawn)


def verify(window: Window, randomness: WindowRandomness, rule: VerificationRule) -> VerificationResult:
    """Verify every row's window with ``rule``: a fixed sequence of tensor ops, no checks, no host reads.

    Parameters
    ----------
    window : Window
        ``lengths`` in 0..L (0: the next state is a plain step from the root).
    randomness : WindowRandomness
    rule : TokenRule or BlockRule

    Returns
    -------
    VerificationResult
    """
    ratios = _log_ratios(window)
    if window.width == 0:  # every row takes its bonus step: a plain step
        empty = ratios.deltas
        accepted = torch.zeros_like(window.lengths)
        return VerificationResult(
            accepted, _next_state(window, randomness, accepted, ("weighted", empty)), empty, empty, empty
        )
    log_uniforms = torch.log(randomness.uniforms)
    if isinstance(rule, TokenRule):
        log_accept = ratios.log_ratios.clamp(max=0.0)
        # accept iff u < min(1, r), compared in log space
        accepted = _first_failure((log_uniforms < log_accept) & ratios.valid)
        zero = torch.zeros_like(randomness.residual_uniforms)
        kind = "reflection" if rule.residual == "reflection" else "weighted"
        next_state = _next_state(window, randomness, accepted, (kind, zero))
        accept_prob = log_accept.exp().masked_fill(~ratios.valid, math.nan)
        return VerificationResult(accepted, next_state, accept_prob, accept_prob, ratios.deltas)

    log_weights = _block_log_weights(ratios.log_ratios)
    if rule.stop_weight == "lagged":
        lagged = torch.cat([torch.zeros_like(log_weights[:, :1]), log_weights[:, :-1]], dim=1)
        last = torch.arange(window.width, device=log_weights.device) == window.lengths[:, None] - 1
        log_stop = torch.where(last, log_weights, _block_log_stop_probs(lagged, ratios.deltas, window))
    else:
        log_stop = _block_log_stop_probs(log_weights, ratios.deltas, window)
    if rule.accept_always:
        log_stop = torch.zeros_like(log_stop)
    log_stop = log_stop.masked_fill(~ratios.valid, -math.inf)
    # eta_i < h_i (strict: a stop with h_i = 0 has an empty residual)
    success = log_uniforms < log_stop
    accepted = _first_failure(success) if rule.stopping == "first-failure" else _last_success(success)
    padded = torch.cat([torch.zeros_like(log_weights[:, :1]), log_weights], dim=1)
    residual_log_weight = take_column(padded, accepted)  # log w_tau, w_0 = 1
    if rule.residual == "unweighted":
        residual_log_weight = torch.zeros_like(residual_log_weight)
    kind = "reflection" if rule.residual == "reflection" else "weighted"
    next_state = _next_state(window, randomness, accepted, (kind, residual_log_weight))
    return VerificationResult(
        accepted=accepted,
        next_state=next_state,
        weights=log_weights.exp().masked_fill(~ratios.valid, math.nan),
        stop_probs=log_stop.exp().masked_fill(~ratios.valid, math.nan),
        deltas=ratios.deltas,
    )


def verify_chosen(
    window: Window, randomness: WindowRandomness, choice: RuleChoice, use_block: torch.Tensor
) -> VerificationResult:
    """:func:`verify` with ``choice.block`` on the rows where ``use_block`` (B,) is True and ``choice.token`` on the
    others (both computed on every row, then selected: static shapes, no host reads)."""
    token, block = verify(window, randomness, choice.token), verify(window, randomness, choice.block)
    return VerificationResult(
        *(torch.where(_expand(use_block, b), b, t) for t, b in zip(_fields(token), _fields(block), strict=True))
    )


def _fields(result: VerificationResult) -> tuple[torch.Tensor, ...]:
    return (result.accepted, result.next_state, result.weights, result.stop_probs, result.deltas)


# ---------------------------------------------------------------------------------------------------------------
# Checked entry points
# ---------------------------------------------------------------------------------------------------------------


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _check_uniforms(values: torch.Tensor, shape: tuple[int, ...], name: str, device: torch.device) -> torch.Tensor:
    _require(isinstance(values, torch.Tensor), f"{name} must be a tensor")
    _require(tuple(values.shape) == shape, f"{name} must have shape {shape}, got {tuple(values.shape)}")
    values = values.to(device=device, dtype=torch.float64)
    _require(bool(((values >= 0) & (values < 1)).all()), f"{name} must lie in [0, 1) (no NaN)")
    return values


def _check_lengths(lengths: torch.Tensor | None, batch: int, width: int, device: torch.device) -> torch.Tensor:
    if lengths is None:
        return torch.full((batch,), width, dtype=torch.long, device=device)
    _require(
        isinstance(lengths, torch.Tensor) and tuple(lengths.shape) == (batch,) and not lengths.is_floating_point(),
        f"lengths must be an integer tensor of shape ({batch},)",
    )
    lengths = lengths.to(device=device, dtype=torch.long)
    _require(bool(((lengths >= 1) & (lengths <= width)).all()), f"lengths must lie in 1..{width}")
    return lengths


def check_window(
    states: torch.Tensor,
    draft_means: torch.Tensor,
    target_means: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    uniforms: torch.Tensor,
    residual_uniforms: torch.Tensor,
    residual_noise: torch.Tensor,
    lengths: torch.Tensor | None = None,
) -> tuple[Window, WindowRandomness]:
    """Validate the arguments of a public rule and bundle them (this reads tensors on the host).

    Raises
    ------
    ValueError
        Naming the argument: a non-tensor, wrong shapes, sigmas that are NaN, inf, negative or 0 on a used step (a
        deterministic step cannot be speculated), uniforms outside [0, 1), lengths outside 1..L, NaN or inf in the
        states or means.
    """
    for name, tensor in (
        ("states", states),
        ("draft_means", draft_means),
        ("target_means", target_means),
        ("sigmas", sigmas),
        ("residual_noise", residual_noise),
    ):
        _require(isinstance(tensor, torch.Tensor), f"{name} must be a tensor, got {type(tensor).__name__}")
    _require(states.dim() >= 3, "states must have shape (B, L+1, *event) with at least one event dimension")
    batch, width = states.shape[0], states.shape[1] - 1
    event = tuple(states.shape[2:])
    _require(width >= 1, "a window needs at least one drafted step: states must have L+1 >= 2 entries")
    for name, tensor, shape in (
        ("target_means", target_means, (batch, width + 1, *event)),
        ("draft_means", draft_means, (batch, width, *event)),
        ("residual_noise", residual_noise, (batch, *event)),
    ):
        _require(tuple(tensor.shape) == shape, f"{name} must have shape {shape}, got {tuple(tensor.shape)}")
    lengths = _check_lengths(lengths, batch, width, states.device)
    if sigmas.dim() == 1:
        _require(sigmas.shape[0] == width + 1, f"sigmas must have shape (L+1,) = ({width + 1},) or (B, L+1)")
        sigmas = sigmas.expand(batch, width + 1)
    _require(tuple(sigmas.shape) == (batch, width + 1), f"sigmas must have shape {(batch, width + 1)}")
    sigmas = sigmas.to(device=states.device, dtype=torch.float64)
    used = torch.arange(width + 1, device=states.device)[None, :] <= lengths[:, None]  # steps 1..L_r + 1
    used_sigmas = torch.where(used, sigmas, 1.0)
    _require(bool(torch.isfinite(used_sigmas).all()), "sigmas must be finite (no NaN or inf)")
    _require(bool((used_sigmas >= 0).all()), "sigmas must be >= 0")
    _require(
        bool((used_sigmas > 0).all()),
        "a step with sigma == 0 is deterministic and cannot be speculated: take that step plainly",
    )
    randomness = WindowRandomness(
        uniforms=_check_uniforms(uniforms, (batch, width), "uniforms", states.device),
        residual_uniforms=_check_uniforms(residual_uniforms, (batch,), "residual_uniforms", states.device),
        residual_noise=residual_noise,
    )
    drafted = used[:, :width] & (torch.arange(width, device=states.device) < lengths[:, None])  # steps 1..L_r
    for name, tensor, columns in (
        ("states", states, used),  # the root and the drafted states 1..L_r
        ("draft_means", draft_means, drafted),
        ("target_means", target_means, used),
    ):
        finite = torch.isfinite(tensor).flatten(2).all(dim=2) | ~columns  # what lies beyond a row's window is ignored
        _require(bool(finite.all()), f"{name} contain NaN or inf")
    _require(bool(torch.isfinite(residual_noise).all()), "residual_noise contain NaN or inf")
    return Window(states, draft_means, target_means, used_sigmas, lengths), randomness


def _checked_result(result: VerificationResult) -> VerificationResult:
    if not bool(torch.isfinite(result.next_state).all()):
        raise ValueError("the log density ratios overflow: states and means are too far apart for float64")
    return result


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
    ``residual_uniforms`` nor ``residual_noise``) or by a fresh draw (``residual="fresh"``). If all ``L_r`` steps
    of row r are accepted, its next state is the bonus step ``target_means[r, L_r] + sigmas[r, L_r] *
    residual_noise[r]`` (the only use of ``residual_noise`` under reflection).

    Parameters
    ----------
    states, draft_means, target_means, sigmas, uniforms, residual_uniforms, residual_noise
        See the module docstring for shapes; ``sigmas`` may also be (L+1,), shared by the rows.
    residual : {"reflection", "fresh"}
    lengths : Tensor, shape (B,), long, optional
        Per-row windows in 1..L (default: L for every row).

    Returns
    -------
    VerificationResult
        ``weights`` and ``stop_probs`` both hold the per-step acceptance probabilities ``min(1, r_i)``.
    """
    if residual not in ("reflection", "fresh"):
        raise ValueError(f"residual must be 'reflection' or 'fresh', got {residual!r}")
    window, randomness = check_window(
        states, draft_means, target_means, sigmas, uniforms=uniforms, residual_uniforms=residual_uniforms,
        residual_noise=residual_noise, lengths=lengths,
    )  # fmt: skip
    return _checked_result(verify(window, randomness, TokenRule(residual)))


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
    variant: BlockRule | None = None,
) -> VerificationResult:
    """Block (chunk) verification of Sun et al. adapted to Gaussian transitions (docs/design.md §3.3).

    ``w_0 = 1, w_i = min(1, w_{i-1} r_i)``; ``tau = max{i : eta_i < h_i}`` (0 if none: the last success, not the
    first failure); keep ``X_1..X_tau``; the next state is the bonus step if ``tau == L_r`` (the row's window), else a
    fresh draw from ``max(w_tau P_{tau+1} - Q_{tau+1}, 0) / R(w_tau, delta_{tau+1})``. With ``L = 1`` this is the
    token rule with a fresh residual.

    Parameters
    ----------
    states, draft_means, target_means, sigmas, uniforms, residual_uniforms, residual_noise
        See the module docstring for shapes; ``uniforms`` are the ``eta_i``.
    lengths : Tensor, shape (B,), long, optional
        Per-row windows, as in :func:`token_verify`.
    variant : BlockRule, optional
        A variant of the rule (default: the exact rule); :data:`CONTROL_RULES` holds the negative controls.

    Returns
    -------
    VerificationResult
    """
    window, randomness = check_window(
        states, draft_means, target_means, sigmas, uniforms=uniforms, residual_uniforms=residual_uniforms,
        residual_noise=residual_noise, lengths=lengths,
    )  # fmt: skip
    return _checked_result(verify(window, randomness, BlockRule() if variant is None else variant))


def apply_rule(
    rule: str | VerificationRule,
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
    """Verify a window with ``rule``: a name of :data:`RULES` or :data:`CONTROL_RULES`, or a rule object.

    Same arguments and result as :func:`token_verify` / :func:`block_verify`.
    """
    resolved = resolve_rule(rule)
    window, randomness = check_window(
        states, draft_means, target_means, sigmas, uniforms=uniforms, residual_uniforms=residual_uniforms,
        residual_noise=residual_noise, lengths=lengths,
    )  # fmt: skip
    return _checked_result(verify(window, randomness, resolved))
