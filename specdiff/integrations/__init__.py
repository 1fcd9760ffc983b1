"""Bridges from other libraries' diffusion pipelines to specdiff's samplers.

- :mod:`specdiff.integrations.diffusers`: kernels read off diffusers schedulers (``kernel_from_scheduler``) and
  speculative sampling of diffusers' ``StableDiffusionPipeline`` and ``DiTPipeline``.
- :mod:`specdiff.integrations.tiny`: tiny, randomly initialized diffusers pipelines built offline, for tests and
  examples.
- :mod:`specdiff.integrations.digits`: a small Stable-Diffusion-architecture model of the 8x8 digits, trained here
  and shipped as a saved ``StableDiffusionPipeline`` (``load_digits_pipeline``).
- :mod:`specdiff.integrations.deepcache`: the cached-feature (DeepCache-style) drafter for a UNet
  (``CachedFeatureDrafter``): the outermost level recomputed, the deeper features reused from the latest target
  call.

Both need the optional dependencies ``diffusers`` and ``transformers`` (``pip install "specdiff[diffusers]"``); this
package imports neither, so ``import specdiff`` works without them.
"""
