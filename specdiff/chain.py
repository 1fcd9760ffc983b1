"""A diffusion model seen as a Gaussian Markov chain, and the per-step tables read off a kernel.

:class:`ModelChain` bundles a model, its kernel and the per-sample conditioning; one target call is
:meth:`ModelChain.evaluate`: the model's prediction at each state and the mean of that state's Gaussian transition.
Rows may sit at different steps: for kernels linear in the state and the prediction (every kernel here without
``clip_sample``) the per-step coefficients are read once per kernel (:func:`linear_coefficients`), kept on the
states' device, and applied to all rows in one vectorized expression, with no host reads. A non-linear kernel
(``clip_sample=True``) is evaluated per distinct step, which reads the steps on the host.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from specdiff.kernels import Kernel

Model = Callable[..., torch.Tensor]
"""``model(x, t, **conditioning) -> prediction``: x (M, *event) the kernel's model input, t (M,) timesteps."""


@dataclass(frozen=True)
class LinearCoefficients:
    """Per-step coefficients (N,) float64 of a kernel whose steps are linear in the state and the prediction:
    ``model_input = input_scale[n] x`` and ``mean = state_coefficient[n] x + prediction_coefficient[n] prediction``.
    """

    input_scale: torch.Tensor
    state_coefficient: torch.Tensor
    prediction_coefficient: torch.Tensor

    def to(self, device: torch.device) -> LinearCoefficients:
        """The same coefficients on ``device``."""
        return LinearCoefficients(
            self.input_scale.to(device), self.state_coefficient.to(device), self.prediction_coefficient.to(device)
        )


# Per-step tables read off a kernel, kept as long as the kernel lives: a kernel is fixed once built (it precomputes
# its own per-step values at construction), and probing it step by step costs milliseconds per sampling call.
_KERNEL_TABLES: weakref.WeakKeyDictionary[Kernel, dict[str, object]] = weakref.WeakKeyDictionary()


def _kernel_table(kernel: Kernel, name: str, compute: Callable[[Kernel], object]) -> object:
    tables = _KERNEL_TABLES.setdefault(kernel, {})
    if name not in tables:
        tables[name] = compute(kernel)
    return tables[name]


def linear_coefficients(kernel: Kernel) -> LinearCoefficients:
    """Read the coefficients of every step off the kernel by probing it with unit inputs (once per kernel).

    Every kernel here is linear in ``(x, prediction)`` without ``clip_sample`` (DDPM, DDIM, Euler-Maruyama and Euler
    ancestral means are linear combinations of ``x`` and ``x0`` / ``eps``, themselves linear in both), so a batch of
    rows at different steps is computed in one vectorized expression instead of one kernel call per step.
    """
    if kernel.clip_sample:
        raise ValueError("clip_sample makes the kernel non-linear")
    coefficients = _kernel_table(kernel, "linear", _probe_linear_coefficients)
    assert isinstance(coefficients, LinearCoefficients)
    return coefficients


def _probe_linear_coefficients(kernel: Kernel) -> LinearCoefficients:
    one, zero = torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)
    scales, state, prediction = [], [], []
    for step in range(kernel.num_steps):
        scales.append(float(kernel.model_input(one, step)[0, 0]))
        state.append(float(kernel.transition(one, zero, step).mean[0, 0]))
        prediction.append(float(kernel.transition(zero, one, step).mean[0, 0]))
    as_tensor = lambda values: torch.tensor(values, dtype=torch.float64)  # noqa: E731
    return LinearCoefficients(as_tensor(scales), as_tensor(state), as_tensor(prediction))


def kernel_sigmas(kernel: Kernel) -> torch.Tensor:
    """Per-step noise scales ``sigma_n`` (N,) float64 of a kernel (they do not depend on the state); a fresh copy."""
    sigmas = _kernel_table(kernel, "sigmas", _probe_sigmas)
    assert isinstance(sigmas, torch.Tensor)
    return sigmas.clone()


def _probe_sigmas(kernel: Kernel) -> torch.Tensor:
    probe = torch.zeros(1, 1, dtype=torch.float64)
    return torch.tensor(
        [float(kernel.transition(probe, probe, step).sigma) for step in range(kernel.num_steps)], dtype=torch.float64
    )


def _per_row(values: torch.Tensor, steps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values[steps]`` shaped (M, 1, ..., 1) to broadcast against ``like`` (M, *event), in its dtype."""
    return values[steps].to(like.dtype).reshape((-1,) + (1,) * (like.dim() - 1))


def _grouped(
    function: Callable[[torch.Tensor, int], torch.Tensor], states: torch.Tensor, steps: torch.Tensor
) -> torch.Tensor:
    """Apply a per-step function ``function(x, step_index)`` to rows grouped by their step index (M,) (host reads)."""
    unique = torch.unique(steps)
    if unique.numel() == 1:
        return function(states, int(unique[0]))
    output = torch.empty_like(states)
    for step in unique.tolist():
        rows = torch.nonzero(steps == step).squeeze(1)
        output[rows] = function(states[rows], int(step))
    return output


def _checked_prediction(prediction: object, states: torch.Tensor, source: str) -> torch.Tensor:
    """``prediction`` after checking it is a real tensor of the states' shape on their device (metadata only: a
    prediction that broadcasts would give every sample the same prediction, silently)."""
    if not isinstance(prediction, torch.Tensor):
        raise ValueError(f"{source} returned a {type(prediction).__name__}, not a tensor")
    if prediction.shape != states.shape:
        raise ValueError(
            f"{source} returned shape {tuple(prediction.shape)} for states of shape {tuple(states.shape)}: a "
            "prediction has one entry per state entry"
        )
    if prediction.device != states.device or prediction.is_complex():
        raise ValueError(
            f"{source} returned a {prediction.dtype} tensor on {prediction.device} for real states on {states.device}"
        )
    return prediction


@dataclass
class ModelChain:
    """A diffusion model seen as a Gaussian Markov chain: the model, its kernel and the per-sample conditioning.

    Parameters
    ----------
    model : callable
        ``model(x, t, **conditioning) -> prediction`` with x (M, *event), t (M,) training timesteps.
    kernel : Kernel
        Turns a prediction into the step's Gaussian transition.
    conditioning : mapping of str to Tensor, optional
        Per-sample keyword arguments of the model, each of shape (B, ...); rows are selected per call.
    """

    model: Model
    kernel: Kernel
    conditioning: Mapping[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.kernel, Kernel):
            raise ValueError(f"kernel must be a specdiff.kernels.Kernel, got {type(self.kernel).__name__}")
        if not callable(self.model):
            raise ValueError("model must be callable")
        self._linear = None if self.kernel.clip_sample else linear_coefficients(self.kernel)
        self._on_device: dict[torch.device, tuple[LinearCoefficients | None, torch.Tensor]] = {}

    def prepare(self, device: torch.device) -> None:
        """Copy the per-step tables to ``device`` now, before the first round (so that a compiled round is traced
        with them in place and its graph serves every later round)."""
        self._tables(device)

    def _tables(self, device: torch.device) -> tuple[LinearCoefficients | None, torch.Tensor]:
        """The linear coefficients and the timesteps on ``device`` (copied there once)."""
        if device not in self._on_device:
            linear = None if self._linear is None else self._linear.to(device)
            self._on_device[device] = (linear, self.kernel.timesteps.to(device))
        return self._on_device[device]

    def _arguments(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: value[rows.to(value.device)] for name, value in self.conditioning.items()}

    def _inputs(self, states: torch.Tensor, steps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        linear, timesteps = self._tables(states.device)
        if linear is not None:
            inputs = _per_row(linear.input_scale, steps, states) * states
        else:
            inputs = _grouped(self.kernel.model_input, states, steps)
        return inputs, timesteps[steps]

    def predict(self, states: torch.Tensor, steps: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The model prediction at ``states`` (M, *event) for steps (M,) of samples ``rows`` (M,)."""
        inputs, timesteps = self._inputs(states, steps)
        return _checked_prediction(self.model(inputs, timesteps, **self._arguments(rows)), states, "the model")

    def predict_first_blocks(
        self, states: torch.Tensor, steps: torch.Tensor, rows: torch.Tensor, blocks: int
    ) -> torch.Tensor:
        """The early-exit prediction ``model.forward_first_k(x, t, k=blocks, **conditioning)``."""
        forward_first_k = getattr(self.model, "forward_first_k", None)
        if forward_first_k is None:
            raise ValueError("early exit needs a model with a forward_first_k(x, t, ..., k) method")
        inputs, timesteps = self._inputs(states, steps)
        prediction = forward_first_k(inputs, timesteps, k=blocks, **self._arguments(rows))
        return _checked_prediction(prediction, states, "the model's forward_first_k")

    def means(self, states: torch.Tensor, predictions: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """Transition means ``mu_n(x)`` (M, *event) in the states' dtype, from states and predictions (M, *event)
        (any dtype: a half-precision prediction is cast up) and steps (M,)."""
        predictions = predictions.to(states.dtype)
        linear, _ = self._tables(states.device)
        if linear is not None:
            state_part = _per_row(linear.state_coefficient, steps, states) * states
            return state_part + _per_row(linear.prediction_coefficient, steps, states) * predictions
        unique = torch.unique(steps)
        if unique.numel() == 1:
            return self.kernel.transition(states, predictions, int(unique[0])).mean
        output = torch.empty_like(states)
        for step in unique.tolist():
            rows = torch.nonzero(steps == step).squeeze(1)
            output[rows] = self.kernel.transition(states[rows], predictions[rows], int(step)).mean
        return output

    def evaluate(
        self, states: torch.Tensor, steps: torch.Tensor, rows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One target call: ``(means, predictions)``, each (M, *event)."""
        predictions = self.predict(states, steps, rows)
        return self.means(states, predictions, steps), predictions
