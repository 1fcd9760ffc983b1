"""Exact speculative sampling of diffusion models: verification rules, residual samplers, samplers, drafters.

``specdiff.sample(model, kernel, x_init, *, drafter, window, rule, generator)`` samples a model speculatively and
``specdiff.sample_plain(model, kernel, x_init, *, generator)`` plainly; both are exactly distributed alike.
"""

from specdiff.sampler import sample, sample_plain

__version__ = "0.1.0"

__all__ = ["__version__", "sample", "sample_plain"]
