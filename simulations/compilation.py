"""Compiled runs that cannot silently run eagerly.

``torch.compile`` keeps at most ``torch._dynamo.config.recompile_limit`` (8 by default) compiled graphs of one
function per process. Past that it runs the function eagerly and only logs a warning, so a benchmark that compiles
many configurations in one process would time its later "compiled" cells eagerly. The sampler's compiled round is one
or two graphs (the first round's, before a drafter's memory exists, and the steady round's) per number of steps N,
batch size and configuration (drafter, rule, window, model): ``round_cost`` compiles 8 (4 configurations at 2
horizons, one graph each) and the ``gpu-compiled`` benchmark preset up to 64 (32 cells). Every timed or checked
compiled run of an experiment runs inside :func:`strict_compilation`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

#: Compiled graphs of one function allowed per process inside :func:`strict_compilation`.
COMPILED_GRAPHS_LIMIT = 128


@contextlib.contextmanager
def strict_compilation(limit: int | None = None) -> Iterator[None]:
    """Within the block, a compiled function that would need more than ``limit`` graphs raises instead of running
    eagerly (``torch._dynamo.exc.FailOnRecompileLimitHit``).

    Parameters
    ----------
    limit : int, optional
        Compiled graphs allowed per function; :data:`COMPILED_GRAPHS_LIMIT` when None.
    """
    limit = COMPILED_GRAPHS_LIMIT if limit is None else limit
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    with torch._dynamo.config.patch(recompile_limit=limit, fail_on_recompile_limit_hit=True):
        yield


__all__ = ["COMPILED_GRAPHS_LIMIT", "strict_compilation"]
