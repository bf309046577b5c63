"""Slow, obviously-correct pure-PyTorch specifications of every kernel, for tests."""
from .ecc import ecc_moments_reference
from .fi import group_fi_reference, pixel_fi_reference
from .sparse_conv import sparse_conv_stage_reference
from .ssim import gaussian_window_reference, ssim_reference
from .swarm import (de_select_reference, de_trial_reference, pixel_replace_reference, pso_step_reference,
                    sparse_perturb_reference, swarm_best_reference)

__all__ = ["ecc_moments_reference", "pixel_fi_reference", "group_fi_reference", "ssim_reference", "gaussian_window_reference", "pso_step_reference", "swarm_best_reference",
           "de_trial_reference", "de_select_reference", "sparse_perturb_reference", "pixel_replace_reference",
           "sparse_conv_stage_reference"]
