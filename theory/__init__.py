"""Closed forms for speculative sampling of Gaussian transitions (numpy / scipy / sympy only, never torch)."""
