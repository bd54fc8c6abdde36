"""The ``vi`` backend: NumPyro stochastic variational inference."""
