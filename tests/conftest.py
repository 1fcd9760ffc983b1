"""Suite-wide settings.

False-positive budget: every statistical test declares ``ALPHA`` (tests/statistics.py, 1e-4 per test, split by
Bonferroni over the comparisons inside the test). The suite has fewer than 100 statistical test cases (parametrized
cases counted one by one), so the probability that any of them fails on a correct implementation is below
100 x 1e-4 = 1%; their seeds are fixed, so a given checkout either passes or fails deterministically.
"""

from __future__ import annotations

import torch

torch.set_num_threads(1)
