"""Per-sample random streams: every sample draws from its own generator, buffered so a batch costs a few big draws.

A speculative round needs, per sample, a different number of normals and uniforms (its own window). Drawing them
with one ``torch.randn`` call per sample and round costs a Python-level call per sample, which dominates a cheap
model. :class:`SampleStreams` instead fills a buffer per sample in fixed blocks and hands out consecutive values:

- sample i's normals are the concatenation of ``torch.randn(n_j, generator=g_i, dtype=dtype)`` calls with block
  sizes ``n_j = normal_block * 2**min(j, DOUBLINGS)`` (1024, 2048, ..., 16384 by default);
- its uniforms are the concatenation of ``torch.rand(m_j, generator=u_i, dtype=torch.float64)`` calls, sizes
  ``m_j = uniform_block * 2**min(j, DOUBLINGS)``, where ``u_i`` is a generator seeded by one draw from ``g_i`` when
  the streams are created.

What sample i receives therefore depends only on its generator and on how many values it has taken so far: not on
the batch size, not on the other samples, and not on when the buffer happens to be refilled (the normals and the
uniforms come from two generators, so refills never interleave differently).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

#: Normals in a sample's first block (later blocks double, up to ``2**DOUBLINGS`` times this).
NORMAL_BLOCK = 1024
#: Uniforms in a sample's first block.
UNIFORM_BLOCK = 256
#: Doublings of the block size: a sample's j-th block holds ``block * 2**min(j, DOUBLINGS)`` values.
DOUBLINGS = 4


def sample_generators(generator: torch.Generator | Sequence[torch.Generator], batch: int) -> list[torch.Generator]:
    """One generator per sample: the given list, or ``batch`` generators seeded deterministically from one.

    Sample i of a split generator is seeded with ``base + i`` where ``base`` is one 62-bit draw from ``generator``,
    so sample i's stream does not depend on the batch size.
    """
    if isinstance(generator, torch.Generator):
        base = int(torch.randint(0, 2**62, (1,), generator=generator).item())
        return [torch.Generator().manual_seed(base + index) for index in range(batch)]
    generators = list(generator)
    if len(generators) != batch:
        raise ValueError(f"expected one generator per sample ({batch}), got {len(generators)}")
    return generators


class _Stream:
    """Buffered values of one kind for every sample: ``buffer[i, head[i]:tail[i]]`` are sample i's next values.

    Sample i's j-th block has ``block * 2**min(j, DOUBLINGS)`` values: short runs draw little, long runs refill
    rarely, and the sizes depend on the sample's own consumption only.
    """

    def __init__(self, generators: list[torch.Generator], block: int, dtype: torch.dtype, normal: bool):
        if isinstance(block, bool) or not isinstance(block, int) or block < 1:
            raise ValueError(f"block must be an int >= 1, got {block!r}")
        self.generators, self.block, self.dtype, self.normal = generators, block, dtype, normal
        batch = len(generators)
        self.buffer = torch.empty((batch, 0), dtype=dtype)
        self.head = torch.zeros(batch, dtype=torch.long)
        self.tail = torch.zeros(batch, dtype=torch.long)
        self.blocks = [0] * batch  # blocks drawn so far, per sample

    def _sizes(self, row: int, needed: int) -> list[int]:
        """Sizes of the next blocks of sample ``row`` that hold at least ``needed`` values."""
        sizes: list[int] = []
        while sum(sizes) < needed:
            sizes.append(self.block << min(self.blocks[row] + len(sizes), DOUBLINGS))
        return sizes

    def _refill(self, rows: torch.Tensor, width: int) -> None:
        """Make at least ``width`` values available to each of ``rows``: keep the unused ones, append whole blocks."""
        available = self.tail[rows] - self.head[rows]
        short = rows[available < width].tolist()
        if not short:
            return
        kept = (self.tail[short] - self.head[short]).tolist()
        sizes = [self._sizes(row, width - keep) for row, keep in zip(short, kept, strict=True)]
        capacity = max(keep + sum(row_sizes) for keep, row_sizes in zip(kept, sizes, strict=True))
        if capacity > self.buffer.shape[1]:
            grown = torch.empty((self.buffer.shape[0], capacity), dtype=self.dtype)
            grown[:, : self.buffer.shape[1]] = self.buffer
            self.buffer = grown
        draw = torch.randn if self.normal else torch.rand
        for row, keep, row_sizes in zip(short, kept, sizes, strict=True):
            values, head, generator = self.buffer[row], int(self.head[row]), self.generators[row]
            values[:keep] = values[head : head + keep].clone()
            start = keep
            for size in row_sizes:
                draw(size, generator=generator, dtype=self.dtype, out=values[start : start + size])
                start += size
            self.head[row], self.tail[row] = 0, start
            self.blocks[row] += len(row_sizes)

    def take(self, rows: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """The next ``counts[r]`` values of each sample ``rows[r]``, as (k, max count); row r's values beyond its
        count are the values it will take next (not consumed, so they may be read but must not be relied on)."""
        width = int(counts.max()) if counts.numel() else 0
        if width == 0:
            return torch.zeros((rows.shape[0], 0), dtype=self.dtype)
        self._refill(rows, width)
        start = rows * self.buffer.shape[1] + self.head[rows]
        values = self.buffer.view(-1)[start[:, None] + torch.arange(width)]
        self.head[rows] += counts
        return values


class SampleStreams:
    """Normals (in ``dtype``) and float64 uniforms for each sample of a batch, each from its own generator.

    Parameters
    ----------
    generators : sequence of torch.Generator
        One per sample (see :func:`sample_generators`); each seeds the sample's uniform generator with one draw.
    dtype : torch.dtype
        Dtype of the normals.
    normal_block, uniform_block : int
        Values in each sample's first block (later blocks double in size, up to ``2**DOUBLINGS`` times). The sizes
        are part of the streams' definition (torch does not promise that ``randn(n)`` is the start of ``randn(m)``
        for m > n), so a run is reproducible for the same block sizes.
    """

    def __init__(
        self,
        generators: Sequence[torch.Generator],
        dtype: torch.dtype,
        *,
        normal_block: int = NORMAL_BLOCK,
        uniform_block: int = UNIFORM_BLOCK,
    ):
        generators = list(generators)
        seeds = [int(torch.randint(0, 2**62, (1,), generator=generator).item()) for generator in generators]
        uniform_generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        self._normals = _Stream(generators, normal_block, dtype, normal=True)
        self._uniforms = _Stream(uniform_generators, uniform_block, torch.float64, normal=False)

    def normals(self, rows: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Standard normals (k, max(counts)) for samples ``rows`` (k,) long; sample ``rows[r]`` consumes
        ``counts[r]`` (k,) of them, the first ones of its row."""
        return self._normals.take(rows, counts)

    def uniforms(self, rows: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Uniforms on [0, 1) in float64 (k, max(counts)); as :meth:`normals`."""
        return self._uniforms.take(rows, counts)
