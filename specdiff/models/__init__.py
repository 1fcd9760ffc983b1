"""Models that plug into the samplers: exact denoisers of known data laws (``gmm``) and a toy DiT (``dit``)."""

from specdiff.models.dit import DIT_PRESETS, DiT, DiTConfig, digits_dataset, load_pretrained
from specdiff.models.gmm import GaussianMixture, perturbed

__all__ = ["DIT_PRESETS", "DiT", "DiTConfig", "GaussianMixture", "digits_dataset", "load_pretrained", "perturbed"]
