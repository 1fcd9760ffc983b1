"""Counter-based randomness (``specdiff.randomness``): the hash against a pure-Python reference, invariances, key
derivation, and the law of the values.

Every statistical test fixes its seed and keeps the false-positive rate ``ALPHA`` of tests/statistics.py (Bonferroni
over its comparisons). The statistical checks are written as functions of the uniform source, so the same code runs
on the real generator (it must pass) and on deliberately weak variants (negative controls, which it must reject):
mix64 replaced by the identity everywhere, and the final per-value mix64 left out (each row a Weyl sequence).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pytest
import torch
from scipy import stats
from torch.utils._python_dispatch import TorchDispatchMode

from specdiff.randomness import (
    DRAFT_NOISE,
    GAMMA,
    NEXT_NOISE,
    RESIDUAL_UNIFORM,
    RULE_UNIFORMS,
    STEP_INCREMENT,
    STEP_MULTIPLIER,
    _bits_to_uniform,
    _hashes,
    _mix64,
    counter_normals,
    counter_uniforms,
    random_codes,
    sample_keys,
)
from tests.statistics import ALPHA

# --- Pure-Python reference (Python ints modulo 2**64, constants written as unsigned hex) --------------------------

_MASK = (1 << 64) - 1


def reference_mix64(x: int) -> int:
    """splitmix64's finalizer on Python ints modulo 2**64 (logical shifts on the unsigned value)."""
    x &= _MASK
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _MASK
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def reference_hash(key: int, step: int, code: int) -> int:
    """The uint64 hash of (key, step, code)."""
    base = reference_mix64(key + step * 0xD1B54A32D192ED03 + 0xDB4F0B9175AE2165)
    return reference_mix64(base + code * 0x9E3779B97F4A7C15)


def reference_uniform(hash_value: int) -> float:
    """``((h >>> 12) + 1/2) * 2**-52``: exact in float64 (53 significant bits)."""
    return ((hash_value >> 12) + 0.5) * 2.0**-52


def unsigned(values: torch.Tensor) -> list[int]:
    """int64 tensor -> its values as uint64 Python ints."""
    return [value & _MASK for value in values.flatten().tolist()]


def long(values: list[int]) -> torch.Tensor:
    """Python ints (any sign, taken modulo 2**64) -> an int64 tensor of their two's complement values."""
    return torch.tensor(
        [(value & _MASK) - (1 << 64) if value & _MASK >= 1 << 63 else value & _MASK for value in values]
    )


#: (key, step, code): negative and extreme int64 keys, negative and large steps, codes of large purposes/indices.
CASES = [
    (0, 0, 0),
    (1, 0, 0),
    (-1, 7, (RESIDUAL_UNIFORM << 40) + 0),
    (-(2**63), 0, 1),
    (2**63 - 1, 123_456, (1023 << 40) + 2**40 - 1),
    (-123_456_789_012_345, -5, (NEXT_NOISE << 40) + 4095),
    (0x5DEECE66D, 2**40, (DRAFT_NOISE << 40) + 16 * 4096 - 1),
]
#: Regression vector, computed once with the reference: (key, step, code) -> uint64 hash.
REGRESSION = [
    ((0, 0, 0), 0x8FA4034E727560BA),
    ((-1, 7, 3 << 40), 0x55E443B8F59A0C04),
    ((2**63 - 1, 123_456, (1023 << 40) + 2**40 - 1), 0x772931F01150D314),
]


def test_reference_mix64_is_splitmix64() -> None:
    # splitmix64 seeded with 0: its first output is mix64(GAMMA) (Vigna's reference implementation).
    assert reference_mix64(0x9E3779B97F4A7C15) == 0xE220A8397B1DCDAF
    assert GAMMA & _MASK == 0x9E3779B97F4A7C15
    assert (STEP_MULTIPLIER & _MASK, STEP_INCREMENT & _MASK) == (0xD1B54A32D192ED03, 0xDB4F0B9175AE2165)


def test_int64_arithmetic_wraps_in_eager_mode() -> None:
    assert torch.equal(torch.tensor([2**62]) * 4, torch.tensor([0]))
    assert torch.equal(torch.tensor([2**63 - 1]) * 2, torch.tensor([-2]))
    assert torch.equal(torch.add(torch.tensor([2**63 - 1]), torch.tensor([1]), alpha=GAMMA), long([2**63 - 1 + GAMMA]))
    # >> on int64 is arithmetic: the logical shift needs the mask.
    assert torch.equal(torch.tensor([-1]) >> 60, torch.tensor([-1]))


def test_mix64_matches_the_reference_bitwise() -> None:
    inputs = [0, 1, -1, 2**63 - 1, -(2**63), 0x9E3779B97F4A7C15, 12345, -98765432123]
    tensor = long(inputs)
    assert unsigned(_mix64(tensor)) == [reference_mix64(value) for value in inputs]
    assert torch.equal(tensor, long(inputs))  # the input is left unchanged


@pytest.mark.parametrize("case", CASES)
def test_hash_uniform_and_normal_match_the_reference(case: tuple[int, int, int]) -> None:
    key, step, code = case
    keys, steps, codes = long([key]), long([step]), long([code])
    expected = reference_hash(key, step, code)
    assert unsigned(_hashes(keys, steps, codes)) == [expected]
    uniform = counter_uniforms(keys, steps, codes)
    assert uniform.item() == reference_uniform(expected)  # bitwise
    normal = counter_normals(keys, steps, codes).item()
    assert normal == pytest.approx(float(stats.norm.ppf(reference_uniform(expected))), rel=1e-13, abs=1e-14)


def test_regression_vector() -> None:
    for (key, step, code), expected in REGRESSION:
        assert reference_hash(key, step, code) == expected
        assert unsigned(_hashes(long([key]), long([step]), long([code]))) == [expected]


def test_many_values_match_the_reference() -> None:
    # A (5, 7) block: every row has its own key and step, every column its own code.
    generator = torch.Generator().manual_seed(11)
    keys = torch.randint(-(2**63), 2**63 - 1, (5,), generator=generator)
    steps = torch.randint(-(2**40), 2**40, (5,), generator=generator)
    codes = torch.cat([random_codes(DRAFT_NOISE, 3), random_codes(RULE_UNIFORMS, 2), random_codes(1000, 2)])
    expected = [
        reference_hash(k, s, c) for k, s in zip(keys.tolist(), steps.tolist(), strict=True) for c in codes.tolist()
    ]
    assert unsigned(_hashes(keys, steps, codes)) == expected
    assert counter_uniforms(keys, steps, codes).flatten().tolist() == [reference_uniform(h) for h in expected]


# --- Invariances ------------------------------------------------------------------------------------------------


def _block(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    keys = sample_keys(generator, batch)
    steps = torch.randint(0, 1000, (batch,), generator=generator)
    codes = torch.cat([random_codes(DRAFT_NOISE, 12), random_codes(NEXT_NOISE, 4), random_codes(RULE_UNIFORMS, 3)])
    return keys, steps, codes


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_rows_do_not_depend_on_the_batch(dtype: torch.dtype) -> None:
    keys, steps, codes = _block(8, seed=1)
    inputs = (keys.clone(), steps.clone(), codes.clone())
    full = counter_normals(keys, steps, codes, dtype)
    assert all(torch.equal(a, b) for a, b in zip((keys, steps, codes), inputs, strict=True))  # inputs unchanged
    for row in range(8):
        assert torch.equal(counter_normals(keys[row : row + 1], steps[row : row + 1], codes, dtype)[0], full[row])
    order = torch.tensor([5, 0, 7, 3])
    assert torch.equal(counter_normals(keys[order], steps[order], codes, dtype), full[order])
    other_keys, other_steps, _ = _block(5, seed=2)
    larger = counter_normals(torch.cat([other_keys, keys]), torch.cat([other_steps, steps]), codes, dtype)
    assert torch.equal(larger[5:], full)
    assert torch.equal(counter_uniforms(keys[2:4], steps[2:4], codes), counter_uniforms(keys, steps, codes)[2:4])


def test_values_do_not_depend_on_the_other_codes() -> None:
    keys, steps, _ = _block(4, seed=3)
    codes = random_codes(DRAFT_NOISE, 10)
    ten = counter_uniforms(keys, steps, codes)
    assert torch.equal(counter_uniforms(keys, steps, codes[:3]), ten[:, :3])  # prefix
    assert torch.equal(counter_uniforms(keys, steps, random_codes(DRAFT_NOISE, 3)), ten[:, :3])
    picked = torch.tensor([7, 2, 2])
    assert torch.equal(counter_uniforms(keys, steps, codes[picked]), ten[:, picked])
    # Purposes concatenated in one call = separate calls.
    rule, residual = random_codes(RULE_UNIFORMS, 4), random_codes(RESIDUAL_UNIFORM, 1)
    joint = counter_normals(keys, steps, torch.cat([codes, rule, residual]))
    assert torch.equal(joint[:, :10], counter_normals(keys, steps, codes))
    assert torch.equal(joint[:, 10:14], counter_normals(keys, steps, rule))
    assert torch.equal(joint[:, 14:], counter_normals(keys, steps, residual))


def test_steps_and_purposes_change_every_value() -> None:
    keys, steps, _ = _block(16, seed=4)
    codes = random_codes(DRAFT_NOISE, 64)
    values = counter_uniforms(keys, steps, codes)
    assert not (values == counter_uniforms(keys, steps + 1, codes)).any()
    assert not (values == counter_uniforms(keys, steps, random_codes(NEXT_NOISE, 64))).any()
    assert not (values == counter_uniforms(keys + 1, steps, codes)).any()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_output_dtype_device_and_shape(dtype: torch.dtype) -> None:
    keys, steps, codes = _block(3, seed=5)
    normals = counter_normals(keys, steps, codes, dtype)
    uniforms = counter_uniforms(keys, steps, codes)
    assert normals.shape == uniforms.shape == (3, codes.shape[0])
    assert normals.dtype == dtype and uniforms.dtype == torch.float64
    assert normals.device == uniforms.device == keys.device
    assert torch.equal(normals, torch.special.ndtri(uniforms).to(dtype))
    assert counter_normals(keys[:0], steps[:0], codes, dtype).shape == (0, codes.shape[0])
    assert counter_uniforms(keys, steps, codes[:0]).shape == (3, 0)


def test_invalid_inputs_are_rejected() -> None:
    keys, steps, codes = _block(3, seed=6)
    with pytest.raises(TypeError, match="keys must be int64"):
        counter_uniforms(keys.int(), steps, codes)
    with pytest.raises(TypeError, match=r"codes must be a torch\.Tensor"):
        counter_uniforms(keys, steps, [0, 1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one-dimensional"):
        counter_uniforms(keys[:, None], steps, codes)
    with pytest.raises(ValueError, match="shape of keys"):
        counter_uniforms(keys, steps[:2], codes)
    with pytest.raises(TypeError, match="floating"):
        counter_normals(keys, steps, codes, torch.int64)


def test_random_codes() -> None:
    assert random_codes(0, 4).tolist() == [0, 1, 2, 3]
    assert random_codes(3, 2).tolist() == [3 << 40, (3 << 40) + 1]
    assert random_codes(1023, 1).tolist() == [1023 << 40]
    assert random_codes(NEXT_NOISE, 0).shape == (0,)
    assert random_codes(RULE_UNIFORMS, 3).dtype == torch.int64
    assert (DRAFT_NOISE, NEXT_NOISE, RULE_UNIFORMS, RESIDUAL_UNIFORM) == (0, 1, 2, 3)
    for purpose, count in [(-1, 1), (1024, 1), (0, -1), (0, 2**40), (True, 1), (1.0, 1)]:
        with pytest.raises(ValueError, match=r"^(purpose|count) must be"):
            random_codes(purpose, count)  # type: ignore[arg-type]


# --- Keys -------------------------------------------------------------------------------------------------------


def test_split_generator_keys_do_not_depend_on_the_batch() -> None:
    short = sample_keys(torch.Generator().manual_seed(5), 3)
    long_batch = sample_keys(torch.Generator().manual_seed(5), 10)
    assert short.dtype == torch.int64 and short.shape == (3,) and long_batch.shape == (10,)
    assert torch.equal(long_batch[:3], short)
    base = int(torch.randint(0, 2**62, (1,), generator=torch.Generator().manual_seed(5)).item())
    assert unsigned(long_batch) == [reference_mix64(base + index) for index in range(10)]
    assert len(set(long_batch.tolist())) == 10
    # Exactly one draw is taken from the generator.
    used, fresh = torch.Generator().manual_seed(8), torch.Generator().manual_seed(8)
    sample_keys(used, 1000)
    torch.randint(0, 2**62, (1,), generator=fresh)
    assert torch.equal(torch.rand(4, generator=used), torch.rand(4, generator=fresh))
    assert sample_keys(torch.Generator().manual_seed(5), 0).shape == (0,)
    assert sample_keys(torch.Generator().manual_seed(5), 2, device="cpu").device == torch.device("cpu")


def test_one_generator_per_sample() -> None:
    seeds = [3, 1, 4]
    keys = sample_keys([torch.Generator().manual_seed(seed) for seed in seeds], 3)
    draws = [int(torch.randint(0, 2**62, (1,), generator=torch.Generator().manual_seed(seed)).item()) for seed in seeds]
    assert unsigned(keys) == [reference_mix64(draw) for draw in draws]
    # [g] gives sample 0 of g split; a tuple is a sequence too.
    assert torch.equal(
        sample_keys([torch.Generator().manual_seed(9)], 1), sample_keys(torch.Generator().manual_seed(9), 1)
    )
    assert torch.equal(sample_keys(tuple(torch.Generator().manual_seed(seed) for seed in seeds), 3), keys)
    assert sample_keys([], 0).shape == (0,)


def test_key_arguments_are_checked() -> None:
    for wrong, name in [(5, "int"), (np.random.default_rng(0), "Generator"), ("seed", "str"), (None, "NoneType")]:
        with pytest.raises(TypeError, match=rf"torch\.Generator.*got {name}"):
            sample_keys(wrong, 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="holding a int"):
        sample_keys([torch.Generator(), 3], 2)  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"batch is 3, got 2 generators"):
        sample_keys([torch.Generator(), torch.Generator()], 3)
    with pytest.raises(ValueError, match="batch must be >= 0"):
        sample_keys(torch.Generator(), -1)


# --- Law of the values (statistical; the same code rejects the negative controls) --------------------------------

UniformSource = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class Source(NamedTuple):
    """A uniform source (keys (B,), steps (B,), codes (n,)) -> (B, n) float64, and its normals."""

    uniforms: UniformSource
    normals: UniformSource


def _weak_no_final_mix(keys: torch.Tensor, steps: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Negative control: rows mixed, values ``base + code * GAMMA`` without the final mix64 (a Weyl sequence)."""
    bases = _mix64(torch.add(keys, steps, alpha=STEP_MULTIPLIER) + STEP_INCREMENT)
    return _bits_to_uniform(torch.add(bases.unsqueeze(1), codes, alpha=GAMMA))


def _weak_identity(keys: torch.Tensor, steps: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Negative control: mix64 replaced by the identity everywhere."""
    bases = torch.add(keys, steps, alpha=STEP_MULTIPLIER) + STEP_INCREMENT
    return _bits_to_uniform(torch.add(bases.unsqueeze(1), codes, alpha=GAMMA))


def _normals_of(uniforms: UniformSource) -> UniformSource:
    return lambda keys, steps, codes: torch.special.ndtri(uniforms(keys, steps, codes))


REAL = Source(counter_uniforms, counter_normals)
NO_FINAL_MIX = Source(_weak_no_final_mix, _normals_of(_weak_no_final_mix))
IDENTITY = Source(_weak_identity, _normals_of(_weak_identity))

#: Values per layout of the law tests.
N = 100_000


def _layouts(draw: UniformSource, count: int, seed: int) -> dict[str, torch.Tensor]:
    """``count`` (+1) values of ``draw`` along each axis, from fixed random starting points.

    ``samples``: consecutive raw keys ``k0 + i`` (harder than :func:`sample_keys`' already mixed keys), one step and
    one code; ``steps``: one key, consecutive steps; ``codes``: one key and step, consecutive codes of a purpose.
    """
    generator = torch.Generator().manual_seed(seed)
    key0, step0 = (int(v) for v in torch.randint(-(2**62), 2**62, (2,), generator=generator))
    step0 %= 10_000
    code = random_codes(NEXT_NOISE, 8)[5:6]
    index = torch.arange(count + 1)
    one = torch.ones(1, dtype=torch.int64)
    return {
        "samples": draw(key0 + index, torch.full((count + 1,), step0), code)[:, 0],
        "steps": draw(torch.full((count + 1,), key0), step0 + index, code)[:, 0],
        "codes": draw(key0 * one, step0 * one, random_codes(DRAFT_NOISE, count + 1))[0],
    }


def ks_pvalues(source: Source, seed: int) -> dict[str, float]:
    """KS p-values of the uniforms against U(0, 1) and the normals against N(0, 1), along each layout."""
    pvalues = {}
    for kind, draw, law in (("uniform", source.uniforms, "uniform"), ("normal", source.normals, "norm")):
        for layout, values in _layouts(draw, N - 1, seed).items():
            pvalues[f"{kind}/{layout}"] = float(stats.kstest(values.double().numpy(), law).pvalue)
    return pvalues


def _correlation_pvalue(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sided p-value of Pearson's r under independence (Fisher z, sqrt(n - 3) atanh r ~ N(0, 1))."""
    r = float(np.corrcoef(a.numpy(), b.numpy())[0, 1])
    if not math.isfinite(r) or abs(r) >= 1:
        return 0.0
    return float(2 * stats.norm.sf(abs(math.atanh(r)) * math.sqrt(a.numel() - 3)))


def independence_pvalues(source: Source, seed: int) -> dict[str, float]:
    """p-values of: Pearson correlation of neighbouring keys, steps, codes and of code j of purposes 0 and 1; a
    chi-square of non-overlapping adjacent-code pairs (u_2i, u_2i+1) on a 16 x 16 grid."""
    layouts = _layouts(source.uniforms, N, seed)
    pvalues = {f"neighbouring {name}": _correlation_pvalue(u[:-1], u[1:]) for name, u in layouts.items()}
    generator = torch.Generator().manual_seed(seed + 1)
    key, step = (
        torch.randint(-(2**62), 2**62, (1,), generator=generator),
        torch.randint(0, 1000, (1,), generator=generator),
    )
    purposes = source.uniforms(key, step, torch.cat([random_codes(DRAFT_NOISE, N), random_codes(NEXT_NOISE, N)]))[0]
    pvalues["purposes 0 and 1"] = _correlation_pvalue(purposes[:N], purposes[N:])
    pairs = source.uniforms(key, step + 1, random_codes(DRAFT_NOISE, 2 * N))[0].view(N, 2)
    cells = (pairs * 16).long().clamp(0, 15)
    counts = torch.bincount(cells[:, 0] * 16 + cells[:, 1], minlength=256).double().numpy()
    pvalues["adjacent codes 16x16"] = float(stats.chisquare(counts).pvalue)
    return pvalues


@pytest.mark.statistical
@pytest.mark.parametrize(
    ("source", "rejected"), [(REAL, False), (IDENTITY, True)], ids=["counter", "control-identity-mix"]
)
def test_values_are_uniform_and_normal(source: Source, rejected: bool) -> None:
    # 6 KS tests (2 laws x 3 layouts) of n = 1e5, each at ALPHA / 6: critical distance 0.0076. (KS is invariant
    # under the monotone ndtri, so the normal tests check that counter_normals is ndtri of the uniforms.)
    pvalues = ks_pvalues(source, seed=101)
    threshold = ALPHA / len(pvalues)
    failed = {name: p for name, p in pvalues.items() if p < threshold}
    assert bool(failed) == rejected, pvalues


@pytest.mark.statistical
@pytest.mark.parametrize(
    ("source", "rejected"),
    [(REAL, False), (NO_FINAL_MIX, True), (IDENTITY, True)],
    ids=["counter", "control-no-final-mix", "control-identity-mix"],
)
def test_values_are_independent(source: Source, rejected: bool) -> None:
    # 5 comparisons at ALPHA / 5 with n = 1e5 pairs each: a correlation is flagged from |r| = 0.0135; the chi-square
    # (255 dof, critical value 358.5) detects with probability 1/2 cell probabilities off by 3.2% rms.
    pvalues = independence_pvalues(source, seed=202)
    threshold = ALPHA / len(pvalues)
    failed = {name: p for name, p in pvalues.items() if p < threshold}
    assert bool(failed) == rejected, pvalues


def test_uniforms_are_safe_for_logarithms() -> None:
    generator = torch.Generator().manual_seed(303)
    keys = sample_keys(generator, 1000)
    uniforms = counter_uniforms(keys, torch.arange(1000), random_codes(RULE_UNIFORMS, 1000))  # 1e6 values
    assert 0 < float(uniforms.min()) and float(uniforms.max()) < 1
    assert torch.isfinite(torch.log(uniforms)).all() and torch.isfinite(torch.log1p(-uniforms)).all()
    # The extreme hashes: 0 and all ones, and the values around the middle.
    extremes = _bits_to_uniform(long([0, -1, 2**63 - 1, -(2**63)]))
    assert extremes.tolist() == [2.0**-53, 1 - 2.0**-53, 0.5 - 2.0**-53, 0.5 + 2.0**-53]
    assert torch.isfinite(torch.log(extremes)).all() and torch.isfinite(torch.log1p(-extremes)).all()
    normals = torch.special.ndtri(extremes)
    assert torch.isfinite(normals).all()
    assert float(normals[0]) == pytest.approx(-8.2095361516, abs=1e-9) and float(normals[1]) == -float(normals[0])


# --- No synchronization, few ops ----------------------------------------------------------------------------------


class _RecordOps(TorchDispatchMode):
    """Records the name of every aten op dispatched; an indexing op with a boolean mask is recorded as
    ``"boolean mask"`` (its shape depends on the data: a synchronization on a GPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        indices = args[1] if name.startswith("index") and len(args) > 1 and isinstance(args[1], list | tuple) else ()
        masked = any(isinstance(index, torch.Tensor) and index.dtype == torch.bool for index in indices)
        self.ops.append("boolean mask" if masked else name)
        return func(*args, **(kwargs or {}))


#: Ops that read a tensor's value on the host (a device synchronization) or produce data-dependent shapes.
SYNCHRONIZING = {
    "_local_scalar_dense",
    "item",
    "is_nonzero",
    "nonzero",
    "masked_select",
    "equal",
    "unique",
    "boolean mask",
}
#: Ops that launch no kernel: views and allocations.
NO_KERNEL = {"unsqueeze", "view", "detach", "_unsafe_view", "expand", "empty_like", "empty"}
#: Most aten ops per call of counter_normals (kernels, views, allocations); measured: 35 (float64), 36 (float32).
MAX_OPS = 36


def _recorded(call: Callable[[], object]) -> list[str]:
    with _RecordOps() as recorder:
        call()
    return recorder.ops


def test_the_recorder_sees_synchronizations() -> None:
    # Negative control of the next test: a host read and a boolean mask are recorded.
    values = torch.randn(5)
    assert "_local_scalar_dense" in _recorded(lambda: float(values.sum()))
    assert "_local_scalar_dense" in _recorded(lambda: bool(values[0] > 0))
    assert "boolean mask" in _recorded(lambda: values[values > 0])
    assert "masked_select" in _recorded(lambda: values.masked_select(values > 0))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_counter_normals_do_not_synchronize(dtype: torch.dtype) -> None:
    counts = {}
    for batch, width in [(1, 5), (64, 300)]:
        keys, steps = sample_keys(torch.Generator().manual_seed(batch), batch), torch.arange(batch)
        codes = torch.cat([random_codes(DRAFT_NOISE, width), random_codes(RULE_UNIFORMS, 3)])
        ops = _recorded(lambda: counter_normals(keys, steps, codes, dtype))  # noqa: B023
        assert not set(ops) & SYNCHRONIZING, ops
        counts[batch] = (len(ops), len([op for op in ops if op not in NO_KERNEL]))
        uniform_ops = _recorded(lambda: counter_uniforms(keys, steps, codes))  # noqa: B023
        assert not set(uniform_ops) & SYNCHRONIZING, uniform_ops
    assert counts[1] == counts[64], counts
    total, kernels = counts[1]
    print(f"counter_normals({dtype}): {total} aten ops per call, {kernels} of them kernels")
    assert total <= MAX_OPS
    # 13 on the rows (B,), 17 on the values (B, n), plus the cast to dtype.
    assert kernels == 30 + (dtype != torch.float64)
