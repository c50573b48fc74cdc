"""MCA's nearest-noun search at the paper's scale: 50,000 CLIP image embeddings (CIFAR-10's size) against all 82,115
WordNet noun embeddings, 512-d, chunked (``ops.topk_neighbours``). With ``--benchmark-enable`` it runs at full size;
in the default run (timing disabled, a smoke test) on a 2,000 x 8,000 slice so the CPU suite stays fast."""

import pytest
import torch

from mmclust import ops

pytestmark = pytest.mark.benchmark

FULL = (50_000, 82_115)
SMOKE = (2_000, 8_000)


def test_bench_nearest_nouns(benchmark):
    n, m = SMOKE if benchmark.disabled else FULL
    g = torch.Generator().manual_seed(0)
    images, nouns = torch.randn(n, 512, generator=g), torch.randn(m, 512, generator=g)
    nearest = benchmark.pedantic(ops.topk_neighbours, args=(images, nouns, 5), kwargs={"chunk_size": 2048},
                                 rounds=1, iterations=1)
    assert nearest.shape == (n, 5) and int(nearest.max()) < m
    # a planted copy of a noun is found first
    images[0] = nouns[123] * 3.0
    assert int(ops.topk_neighbours(images[:1], nouns, 1)[0, 0]) == 123
