"""The ``mcmc`` backend: NumPyro's No-U-Turn sampler."""
