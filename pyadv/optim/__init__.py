"""Batched swarm optimisers on the compiled kernels: many independent problems at once."""
from ._swarm import OptimResult
from .de import DE, one_pixel_population
from .pso import PSO

__all__ = ["PSO", "DE", "OptimResult", "one_pixel_population"]
