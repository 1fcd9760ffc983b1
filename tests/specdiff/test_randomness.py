"""Per-sample random streams: what a sample receives depends on its own generator and its own consumption only."""

from __future__ import annotations

import pytest
import torch

from specdiff.randomness import DOUBLINGS, SampleStreams, sample_generators

BLOCK = 64


def _streams(seeds: list[int], **blocks: int) -> SampleStreams:
    sizes = {"normal_block": BLOCK, "uniform_block": BLOCK} | blocks
    return SampleStreams([torch.Generator().manual_seed(seed) for seed in seeds], torch.float64, **sizes)


def _taken(streams: SampleStreams, rows: list[int], counts: list[list[int]], kind: str) -> list[torch.Tensor]:
    """Take ``counts[t][r]`` values for row ``rows[r]`` at each time t; return each row's consumed values."""
    taken: list[list[torch.Tensor]] = [[] for _ in rows]
    take = streams.normals if kind == "normals" else streams.uniforms
    for step_counts in counts:
        values = take(torch.tensor(rows), torch.tensor(step_counts))
        for index, count in enumerate(step_counts):
            taken[index].append(values[index, :count])
    return [torch.cat(parts) for parts in taken]


@pytest.mark.parametrize("kind", ["normals", "uniforms"])
def test_a_sample_receives_the_same_values_whatever_the_batch_takes(kind: str) -> None:
    # Sample seeded 7 takes 5, 0, 130, 1, 64 values; its neighbours take much more or nothing, which changes when the
    # shared buffer is refilled and how wide it is.
    own = [5, 0, 130, 1, 64, 900]
    batch = _taken(_streams([3, 7, 11]), [0, 1, 2], [[300, c, 0] for c in own], kind)[1]
    alone = _taken(_streams([7]), [0], [[c] for c in own], kind)[0]
    assert torch.equal(batch, alone)
    assert batch.shape == (sum(own),)


def test_streams_are_the_documented_concatenation_of_blocks() -> None:
    generator = torch.Generator().manual_seed(4)
    uniform_seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    # Block j holds BLOCK * 2**min(j, DOUBLINGS) values: 64, 128, 256, ...
    sizes = [BLOCK << min(j, DOUBLINGS) for j in range(3)]
    normals = torch.cat([torch.randn(size, generator=generator, dtype=torch.float64) for size in sizes])
    uniform_generator = torch.Generator().manual_seed(uniform_seed)
    uniforms = torch.cat([torch.rand(size, generator=uniform_generator, dtype=torch.float64) for size in sizes[:2]])
    streams = _streams([4])
    # Nothing is skipped or repeated across takes and refills, and the two kinds do not disturb each other.
    assert torch.equal(_taken(streams, [0], [[50], [3], [100], [39], [200]], "normals")[0], normals[:392])
    assert torch.equal(_taken(streams, [0], [[70], [58], [64]], "uniforms")[0], uniforms[:192])


def test_values_beyond_a_count_are_the_next_ones_and_are_not_consumed() -> None:
    streams = _streams([1, 2])
    first = streams.normals(torch.tensor([0, 1]), torch.tensor([2, 5]))
    second = streams.normals(torch.tensor([0]), torch.tensor([3]))
    assert first.shape == (2, 5)
    assert torch.equal(second[0], first[0, 2:5])


def test_dtypes_ranges_and_empty_takes() -> None:
    streams = SampleStreams([torch.Generator().manual_seed(0)], torch.float32)
    assert streams.normals(torch.tensor([0]), torch.tensor([10])).dtype == torch.float32
    uniforms = streams.uniforms(torch.tensor([0]), torch.tensor([5000]))
    assert uniforms.dtype == torch.float64 and bool(((uniforms >= 0) & (uniforms < 1)).all())
    assert streams.normals(torch.tensor([0]), torch.tensor([0])).shape == (1, 0)
    with pytest.raises(ValueError, match="block"):
        SampleStreams([torch.Generator()], torch.float64, normal_block=0)


def test_split_generator_is_batch_size_independent() -> None:
    first = sample_generators(torch.Generator().manual_seed(5), 3)
    second = sample_generators(torch.Generator().manual_seed(5), 7)
    for a, b in zip(first, second, strict=False):
        assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))
    with pytest.raises(ValueError, match="one generator per sample"):
        sample_generators([torch.Generator()], 2)
