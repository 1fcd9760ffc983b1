"""Per-sample randomness: counter-based draws, each a pure function of a sample key, a step and a code.

Counter-based draws
-------------------
Every normal and uniform a sample uses is a pure function of three 64-bit integers: the sample's *key* (one per
sample, :func:`sample_keys`), a *step* index and a *code* (which value of the step). :func:`counter_uniforms` and
:func:`counter_normals` compute a whole (B, n) block of them with a fixed number of vectorized integer ops on the
tensors' device (no Python loop over samples, no host synchronization, no ``torch.Generator``), so a sample's values
do not depend on the batch, on the other rows of a call, on the other codes requested with it, or on the order of
the calls. The hash is splitmix64-style, with int64 arithmetic that wraps modulo 2**64:

- per row r: ``base[r] = mix64(keys[r] + steps[r] * STEP_MULTIPLIER + STEP_INCREMENT)``;
- per value: ``h[r, j] = mix64(base[r] + codes[j] * GAMMA)`` with ``GAMMA = 0x9E3779B97F4A7C15``, where ``mix64`` is
  the splitmix64 finalizer (``x ^= x >>> 30; x *= 0xBF58476D1CE4E5B9; x ^= x >>> 27; x *= 0x94D049BB133111EB;
  x ^= x >>> 31``, ``>>>`` the logical shift);
- uniform: ``u = ((h >>> 12) + 1/2) * 2**-52``, the midpoints of 2**52 equal cells, strictly inside (0, 1)
  (``2**-53 <= u <= 1 - 2**-53``, so ``log(u)`` and ``log1p(-u)`` are finite) and symmetric (``1 - u`` is on the grid);
- normal: ``ndtri(u)`` in float64 (the exact inverse CDF up to float64 rounding), cast to the requested dtype; the
  grid truncates the tails at probability 2**-53 on each side (``|z| <= 8.2095``).

A call costs 30 elementwise kernels (13 on (B,) tensors for the rows, 17 on (B, n) tensors), plus the cast for a
dtype other than float64, whatever B and n; they run in place on two (B, n) buffers. Under ``torch.compile`` (checked
on the CPU) the hashes and uniforms are bitwise those of eager mode (int64 multiplication wraps there too); the
normals can differ in the last bit (Inductor's ``ndtri``).

A *code* is ``(purpose << 40) + index`` (:func:`random_codes`): each purpose owns an index space of 2**40 values,
and codes of several purposes can be concatenated so that one call draws them all. The sampler's purposes:

- :data:`DRAFT_NOISE` (0), index ``j * d + k``: the noise of drafted slot j (0-based), element k of the d-dimensional
  state;
- :data:`NEXT_NOISE` (1), index k: the noise of the state committed at the end of a round (a plain step, the bonus
  step, or the orthogonal part of the residual draw);
- :data:`RULE_UNIFORMS` (2), index j: the uniform of the verification rule at drafted slot j;
- :data:`RESIDUAL_UNIFORM` (3), index 0: the uniform of the residual draw.

The key rule: a round's draws are keyed by the round's ROOT step (the step of the state the round starts from),
never by the absolute step of a drafted position alone. The block rule looks at every drafted state of a window
before it decides, so the noise of a draft that was discarded has already influenced the decision; were it keyed by
its absolute step, a later round drafting that same step would reuse it, and its samples would no longer follow the
chain's law. Keying by the root step gives every round fresh values as long as no two rounds of a sample start from
the same step, which holds because every round commits at least one step.

Like any 64-bit splitmix-style design, two rows' value sequences can overlap: row b's code c equals row a's code
c + t whenever ``base[b] = base[a] + t * GAMMA`` (mod 2**64). With R rows whose used codes span D distinct
differences t, the expected number of overlapping row pairs is about ``R**2 * D / 2**65`` (for 10**6 rows and codes
spread over 2**20 differences, under 2**-5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

# --- Counter-based draws ---------------------------------------------------------------------------------------------

#: Purpose of the drafted states' noise: index ``j * d + k`` is element k of drafted slot j's noise.
DRAFT_NOISE = 0
#: Purpose of the noise of the state committed at the end of a round (plain step, bonus step, residual's orthogonal
#: part): index k is its element k.
NEXT_NOISE = 1
#: Purpose of the verification rule's uniforms: index j is the uniform of drafted slot j.
RULE_UNIFORMS = 2
#: Purpose of the residual draw's uniform: index 0.
RESIDUAL_UNIFORM = 3

#: Number of purposes (a purpose is in ``0 .. PURPOSES - 1``).
PURPOSES = 1024
#: A code is ``(purpose << PURPOSE_SHIFT) + index``, ``0 <= index < 2**PURPOSE_SHIFT``.
PURPOSE_SHIFT = 40


def _signed(value: int) -> int:
    """The int64 (two's complement) equivalent of a uint64 constant."""
    return value - (1 << 64) if value >= 1 << 63 else value


#: splitmix64's increment (the golden ratio times 2**64): the stride between consecutive codes.
GAMMA = _signed(0x9E3779B97F4A7C15)
#: Multiplier and increment of the step in a row's base (odd 64-bit constants; the increment keeps key 0 at step 0
#: away from mix64's fixed point 0).
STEP_MULTIPLIER = _signed(0xD1B54A32D192ED03)
STEP_INCREMENT = _signed(0xDB4F0B9175AE2165)
_MIX_1 = _signed(0xBF58476D1CE4E5B9)
_MIX_2 = _signed(0x94D049BB133111EB)
#: Bits of a float64 1.0: ``EXPONENT_ONE | m`` read as a float64 is ``1 + m * 2**-52`` for ``0 <= m < 2**52``.
_EXPONENT_ONE = 0x3FF0000000000000
#: ``1 + m * 2**-52 - _UNIFORM_SHIFT = (m + 1/2) * 2**-52``, exactly (Sterbenz).
_UNIFORM_SHIFT = 1.0 - 2.0**-53


def _logical_shift(x: torch.Tensor, bits: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """``x >>> bits`` for 0 < bits < 64 (into ``out`` when given): torch's ``>>`` on int64 is arithmetic, so the
    sign copies are masked off."""
    shifted = torch.bitwise_right_shift(x, bits) if out is None else torch.bitwise_right_shift(x, bits, out=out)
    return shifted.bitwise_and_((1 << (64 - bits)) - 1)


def _mix64_(x: torch.Tensor, scratch: torch.Tensor | None = None) -> torch.Tensor:
    """The splitmix64 finalizer on int64, IN PLACE on ``x`` (multiplication wraps modulo 2**64); 11 elementwise ops.

    ``scratch`` (the shape and dtype of ``x``, overwritten) avoids allocating a temporary per shift; ``x`` and
    ``scratch`` must be tensors the caller owns.
    """
    scratch = torch.empty_like(x) if scratch is None else scratch
    x.bitwise_xor_(_logical_shift(x, 30, scratch)).mul_(_MIX_1)
    x.bitwise_xor_(_logical_shift(x, 27, scratch)).mul_(_MIX_2)
    return x.bitwise_xor_(_logical_shift(x, 31, scratch))


def _mix64(x: torch.Tensor) -> torch.Tensor:
    """The splitmix64 finalizer on int64 (a new tensor; ``x`` is left unchanged)."""
    return _mix64_(x.clone())


def _bits_to_uniform_(bits: torch.Tensor, scratch: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`_bits_to_uniform` computed in ``scratch`` (an int64 tensor shaped like ``bits``, overwritten; the
    result is a float64 view of it), or in a new tensor."""
    mantissa = _logical_shift(bits, 12, scratch).bitwise_or_(_EXPONENT_ONE)
    return mantissa.view(torch.float64).sub_(_UNIFORM_SHIFT)


def _bits_to_uniform(bits: torch.Tensor) -> torch.Tensor:
    """Uniforms ``((bits >>> 12) + 1/2) * 2**-52`` in float64, from int64 hashes of any shape.

    The top 52 bits ``m`` are placed in the mantissa of a float64 in [1, 2), which is ``1 + m * 2**-52``, and
    ``1 - 2**-53`` is subtracted (exact). The result lies in ``[2**-53, 1 - 2**-53]``. (With 53 bits,
    ``(m + 1/2) * 2**-53`` is not representable above 1/2 and rounds to 1.0 for ``m = 2**53 - 1``.)
    """
    return _bits_to_uniform_(bits)


def _check_counters(keys: torch.Tensor, steps: torch.Tensor, codes: torch.Tensor) -> None:
    """Shapes, dtypes and devices of the inputs of :func:`counter_uniforms` (no data is read)."""
    for name, tensor in (("keys", keys), ("steps", steps), ("codes", codes)):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if tensor.dtype != torch.int64:
            raise TypeError(f"{name} must be int64, got {tensor.dtype}")
        if tensor.dim() != 1:
            raise ValueError(f"{name} must be one-dimensional, got shape {tuple(tensor.shape)}")
    if steps.shape != keys.shape:
        raise ValueError(f"steps {tuple(steps.shape)} must have the shape of keys {tuple(keys.shape)}")
    if not keys.device == steps.device == codes.device:
        devices = f"{keys.device}, {steps.device}, {codes.device}"
        raise ValueError(f"keys, steps and codes must share a device, got {devices}")


def _hashes(keys: torch.Tensor, steps: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """(B, n) int64 hashes ``mix64(base[r] + codes[j] * GAMMA)``, ``base = mix64(keys + steps * M + I)``."""
    hashes, _ = _hashes_and_scratch(keys, steps, codes)
    return hashes


def _hashes_and_scratch(
    keys: torch.Tensor, steps: torch.Tensor, codes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (B, n) hashes and a (B, n) int64 scratch tensor (free to overwrite).

    ``torch.add(x, y, alpha=c)`` computes ``x + c * y`` in one op (wrapping), so a row's base costs 13 ops on (B,)
    tensors and the hashes 12 ops on (B, n) tensors (plus a view); the ops run in place on two (B, n) buffers.
    """
    bases = _mix64_(torch.add(keys, steps, alpha=STEP_MULTIPLIER).add_(STEP_INCREMENT))
    hashes = torch.add(bases.unsqueeze(1), codes, alpha=GAMMA)
    scratch = torch.empty_like(hashes)
    return _mix64_(hashes, scratch), scratch


def sample_keys(
    generator: torch.Generator | Sequence[torch.Generator], batch: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """One 64-bit key per sample, for :func:`counter_uniforms` and :func:`counter_normals`.

    Parameters
    ----------
    generator : torch.Generator or sequence of torch.Generator
        One generator: one 62-bit draw ``base`` is taken from it and sample i's key is ``mix64(base + i)`` (computed
        as a tensor op), so sample i's key depends on ``base`` and i only, never on ``batch``. A sequence: exactly
        ``batch`` generators, one 62-bit draw ``d_i`` from each, and sample i's key is ``mix64(d_i)`` (so ``[g]``
        gives the key of sample 0 of ``g`` split).
    batch : int
        Number of samples B (>= 0).
    device : torch.device or str
        Device of the keys.

    Returns
    -------
    torch.Tensor
        (B,) int64 keys on ``device``.

    Raises
    ------
    TypeError
        If ``generator`` is neither a ``torch.Generator`` nor a sequence of them, or ``batch`` is not an int.
    ValueError
        If a sequence does not hold exactly ``batch`` generators, or ``batch < 0``.
    """
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)):
        raise TypeError(f"batch must be an int, got {type(batch).__name__}")
    if batch < 0:
        raise ValueError(f"batch must be >= 0, got {batch}")
    if isinstance(generator, torch.Generator):
        base = torch.randint(0, 2**62, (1,), generator=generator, device=generator.device, dtype=torch.int64)
        offsets = torch.arange(int(batch), dtype=torch.int64, device=generator.device)
        return _mix64_(base + offsets).to(device)
    accepted = "a torch.Generator or a sequence of torch.Generator (one per sample)"
    if not isinstance(generator, Sequence) or isinstance(generator, (str, bytes)):
        raise TypeError(f"generator must be {accepted}, got {type(generator).__name__}")
    for item in generator:
        if not isinstance(item, torch.Generator):
            raise TypeError(f"generator must be {accepted}, got a sequence holding a {type(item).__name__}")
    if len(generator) != batch:
        raise ValueError(f"expected one generator per sample: batch is {batch}, got {len(generator)} generators")
    if batch == 0:
        return torch.zeros(0, dtype=torch.int64, device=device)
    draws = [
        torch.randint(0, 2**62, (1,), generator=item, device=item.device, dtype=torch.int64).to(device)
        for item in generator
    ]
    return _mix64_(torch.cat(draws))


def random_codes(purpose: int, count: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The first ``count`` codes of one purpose: ``(purpose << 40) + arange(count)``.

    Codes of several purposes can be concatenated so that one call of :func:`counter_uniforms` or
    :func:`counter_normals` draws them all.

    Parameters
    ----------
    purpose : int
        In ``0 .. 1023`` (the sampler's are :data:`DRAFT_NOISE`, :data:`NEXT_NOISE`, :data:`RULE_UNIFORMS` and
        :data:`RESIDUAL_UNIFORM`).
    count : int
        Number of codes n, ``0 <= count < 2**40``.
    device : torch.device or str
        Device of the codes.

    Returns
    -------
    torch.Tensor
        (n,) int64 codes.

    Raises
    ------
    ValueError
        If ``purpose`` or ``count`` is not an int in its range.
    """
    for name, value, bound in (("purpose", purpose, PURPOSES), ("count", count, 1 << PURPOSE_SHIFT)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < bound:
            raise ValueError(f"{name} must be an int in [0, {bound}), got {value!r}")
    start = int(purpose) << PURPOSE_SHIFT
    return torch.arange(start, start + int(count), dtype=torch.int64, device=device)


def counter_uniforms(keys: torch.Tensor, steps: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Uniforms on (0, 1), each a pure function of its row's key and step and its column's code.

    Value ``[r, j]`` is ``U(keys[r], steps[r], codes[j])`` (see the module docstring): the same whatever the batch,
    the other rows and the other codes of the call. The values lie on the grid ``(m + 1/2) * 2**-52``,
    ``m = 0 .. 2**52 - 1``, so ``2**-53 <= u <= 1 - 2**-53`` and ``log(u)``, ``log1p(-u)`` are finite.

    Parameters
    ----------
    keys : torch.Tensor
        (B,) int64 sample keys (:func:`sample_keys`).
    steps : torch.Tensor
        (B,) int64 step index of each row.
    codes : torch.Tensor
        (n,) int64 codes (:func:`random_codes`), on the device of ``keys``.

    Returns
    -------
    torch.Tensor
        (B, n) float64 uniforms on the inputs' device.

    Raises
    ------
    TypeError
        If an input is not an int64 tensor.
    ValueError
        If an input is not one-dimensional, ``steps`` and ``keys`` differ in shape, or the devices differ.
    """
    _check_counters(keys, steps, codes)
    hashes, scratch = _hashes_and_scratch(keys, steps, codes)
    return _bits_to_uniform_(hashes, scratch)


def counter_normals(
    keys: torch.Tensor, steps: torch.Tensor, codes: torch.Tensor, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Standard normals, each a pure function of its row's key and step and its column's code.

    Value ``[r, j]`` is ``ndtri(U(keys[r], steps[r], codes[j]))`` computed in float64 (``U`` as in
    :func:`counter_uniforms`, with the same key, step and code), then cast to ``dtype``. The inverse CDF is exact up to
    float64 rounding; the uniforms' grid truncates the tails at probability 2**-53 on each side
    (``|z| <= 8.2095``).

    Parameters
    ----------
    keys : torch.Tensor
        (B,) int64 sample keys (:func:`sample_keys`).
    steps : torch.Tensor
        (B,) int64 step index of each row.
    codes : torch.Tensor
        (n,) int64 codes (:func:`random_codes`), on the device of ``keys``.
    dtype : torch.dtype
        Floating dtype of the result.

    Returns
    -------
    torch.Tensor
        (B, n) normals in ``dtype`` on the inputs' device.

    Raises
    ------
    TypeError
        If an input is not an int64 tensor or ``dtype`` is not a floating dtype.
    ValueError
        As :func:`counter_uniforms`.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    uniforms = counter_uniforms(keys, steps, codes)
    normals = torch.special.ndtri(uniforms, out=uniforms)
    return normals if dtype == torch.float64 else normals.to(dtype)
