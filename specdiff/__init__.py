"""Exact speculative sampling of diffusion models: verification rules, residual samplers, samplers."""

__version__ = "0.1.0"
