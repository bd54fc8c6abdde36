"""The ``map`` backend: the posterior's mode (MAP) and its Laplace approximation."""
