"""The precision of an attack's search: names, what a device runs natively, and the checks.

The search may run the model under bf16 or fp16 autocast; every number a result reports is
checked with the model in its own precision (see the attack base). A precision is named by
its short name ("fp32", "bf16", "fp16"), its long one ("float32", ...) or the torch dtype;
"auto" is the fastest one the device runs natively, measured by the runner.
"""
from __future__ import annotations

import warnings
from typing import Optional

import torch

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_ALIASES = {"fp32": "fp32", "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16",
            "float16": "fp16", "half": "fp16", "auto": "auto", None: "fp32"}
_DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
_warned: set = set()


def precision_name(value) -> str:
    """The short name of a precision option, or a ValueError naming what is allowed."""
    if isinstance(value, torch.dtype):
        key = _DTYPE_NAMES.get(value)
    else:
        key = _ALIASES.get(value.lower() if isinstance(value, str) else value)
    if key is None:
        raise ValueError(f"option precision={value!r} is not allowed: one of 'fp32', 'bf16', 'fp16', 'auto' "
                         f"(or 'float32', 'bfloat16', 'float16', or the torch dtype)")
    return key


def native_precisions(device: torch.device) -> list[str]:
    """The reduced precisions ``device`` computes natively (faster than float32), fastest first:
    bf16 on CPUs with AVX-512 BF16 or AMX and on GPUs of compute capability 8.0 or newer; fp16
    on GPUs of 7.0 or newer (tensor cores) and on CPUs with AMX-FP16."""
    device = torch.device(device)
    if device.type == "cuda":
        cap = torch.cuda.get_device_capability(device)
        return (["bf16"] if cap >= (8, 0) else []) + (["fp16"] if cap >= (7, 0) else [])
    if device.type == "cpu":
        cpu = torch.cpu
        bf16 = getattr(cpu, "_is_avx512_bf16_supported", lambda: False)() or \
            getattr(cpu, "_is_amx_tile_supported", lambda: False)()
        fp16 = getattr(cpu, "_is_amx_fp16_supported", lambda: False)()
        return (["bf16"] if bf16 else []) + (["fp16"] if fp16 else [])
    return []


def check_precision(precision: str, device: torch.device) -> None:
    """Raises where torch's autocast cannot run ``precision`` on ``device``; warns once per
    (precision, device type) where the device only emulates it (slower than float32)."""
    if precision in ("fp32", "auto"):
        return
    device = torch.device(device)
    if not torch.amp.is_autocast_available(device.type):
        raise ValueError(f"option precision={precision!r} is not allowed on {device.type}: torch has no autocast "
                         f"there; use 'fp32'")
    if device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise ValueError(f"option precision='bf16' is not allowed on {device}: the GPU has no bf16; use 'fp16' "
                         f"or 'fp32'")
    if precision not in native_precisions(device) and (precision, device.type) not in _warned:
        _warned.add((precision, device.type))
        warnings.warn(f"precision={precision!r}: {device.type} emulates it (slower than float32 here); "
                      f"'auto' picks only what the device runs natively", RuntimeWarning, stacklevel=4)


def autocast_dtype(precision: str) -> Optional[torch.dtype]:
    return AUTOCAST_DTYPES[precision]


__all__ = ["PRECISIONS", "precision_name", "native_precisions", "check_precision", "autocast_dtype"]
