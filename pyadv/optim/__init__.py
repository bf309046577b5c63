"""Batched optimisers on the compiled kernels, many independent problems at once: PSO and DE
swarms, and box-constrained L-BFGS-B."""
from ._swarm import OptimResult
from .de import DE, one_pixel_population
from .lbfgsb import LBFGSB
from .lbfgsb import minimize as lbfgsb_minimize
from .pso import PSO

__all__ = ["PSO", "DE", "OptimResult", "one_pixel_population", "LBFGSB", "lbfgsb_minimize"]
