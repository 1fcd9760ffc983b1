"""Models that plug into the samplers: exact denoisers of known data laws (``gmm``)."""

from specdiff.models.gmm import GaussianMixture, perturbed

__all__ = ["GaussianMixture", "perturbed"]
