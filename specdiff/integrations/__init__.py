"""Bridges from other libraries' diffusion pipelines to specdiff's samplers.

- :mod:`specdiff.integrations.diffusers`: kernels read off diffusers schedulers (``kernel_from_scheduler``) and
  speculative sampling of diffusers' ``StableDiffusionPipeline`` and ``DiTPipeline``.
- :mod:`specdiff.integrations.tiny`: tiny, randomly initialized diffusers pipelines built offline, for tests and
  examples.

Both need the optional dependencies ``diffusers`` and ``transformers`` (``pip install "specdiff[diffusers]"``); this
package imports neither, so ``import specdiff`` works without them.
"""
