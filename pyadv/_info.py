"""What this build of pyadv compiled in and what it can use on this machine."""
from __future__ import annotations

import platform

import torch

from . import _C

OPS = ("pixel_fi", "fi_accumulate", "fi_finish", "fi_group_accumulate", "fi_group_finish", "pso_step", "swarm_best",
       "de_trial", "de_select", "sparse_perturb", "pixel_replace", "sparse_perturb_out", "pixel_replace_out",
       "ssim_forward", "ssim_backward", "warp_perspective", "ecc_moments", "ecc_solve", "ecc_prefilter", "sparse_conv_stage",
       "lbfgsb_start", "lbfgsb_step")


def info() -> dict:
    """Build and run-time facts: version, ops and their backends, CPU ISA, CUDA.

    ``cpu_isa`` is the kernel variant in use; ``PYADV_CPU_ISA`` caps it. CUDA is usable when
    the CUDA kernels were compiled in and torch sees a GPU.
    """
    build = _C.build_info()
    cuda_available = torch.cuda.is_available()
    ops = {}
    for name in OPS:
        ops[name] = [k for k in ("CPU", "CUDA")
                     if torch._C._dispatch_has_kernel_for_dispatch_key(f"pyadv::{name}", k)]
    return {
        "version": build["version"],
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "compiler": build["compiler"],
        "build_type": build["build_type"],
        "ops": ops,
        "cpu_isa": _C.cpu_isa(),
        "cpu_isa_compiled": list(build["cpu_isa_compiled"]),
        "cpu_isa_supported": list(_C.cpu_isa_supported()),
        "threads": torch.get_num_threads(),
        "cuda_compiled": build["cuda_compiled"],
        "cuda_archs": build["cuda_archs"],
        "cuda_available": cuda_available,
        "cuda_usable": bool(build["cuda_compiled"] and cuda_available),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if cuda_available else [],
        "emulator": build["emulator"],
    }


def format_info(d: dict) -> str:
    width = max(len(k) for k in d)
    lines = []
    for k, v in d.items():
        if isinstance(v, dict):
            v = ", ".join(f"{n} [{'/'.join(b) or 'none'}]" for n, b in v.items())
        elif isinstance(v, list):
            v = ", ".join(map(str, v)) or "none"
        lines.append(f"{k:<{width}}  {v}")
    return "\n".join(lines)
