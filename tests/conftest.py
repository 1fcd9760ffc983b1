"""Suite-wide settings.

False-positive budget: every statistical test declares ``ALPHA`` (tests/statistics.py, 1e-4 per test, split by
Bonferroni over the comparisons inside the test). The suite has fewer than 100 statistical test cases (parametrized
cases counted one by one), so the probability that any of them fails on a correct implementation is below
100 x 1e-4 = 1%; their seeds are fixed, so a given checkout either passes or fails deterministically.

Compiled code: past torch's limit of compiled graphs per function (8) a compiled function would run eagerly with only
a warning. A compiled sampler run raises past its own limit (``specdiff.sampler.COMPILED_GRAPHS_LIMIT``); here any
other compiled function (a test's own ``torch.compile``) raises past torch's limit as well.
"""

from __future__ import annotations

import torch

torch.set_num_threads(1)
torch._dynamo.config.fail_on_recompile_limit_hit = True
