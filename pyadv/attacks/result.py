"""AttackResult: what every attack returns, one batched record per call.

One documented type with the same fields for every attack; what is particular to an attack
(the pixels FIPSO chose, its per-image m) lives in ``extras``, a dict of named per-image
tensors. Saved as one safetensors file whose metadata holds the JSON provenance: nothing is
pickled, so loading a result from someone else is safe.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields, replace
from typing import Any, Optional

import torch

from .._io import atomic_write
from ..metrics.norms import lp_norms

#: Per-image tensors, in the order they are saved.
PER_IMAGE = ("x", "adv", "y", "target", "success", "pred", "probs", "prob_true", "prob_target", "queries",
             "gradients", "iterations", "l0", "l2", "linf")
_FORMAT = "pyadv.AttackResult/1"


@dataclass
class AttackResult:
    """The outcome of one attack call on a batch of B images.

    Tensors (first dimension B):
        x: the clean images; adv: the returned images in [0, 1] (x's dtype and device);
        y: true labels; target: the requested class, -1 where the call had none;
        success: the attack's own criterion, checked on ``adv`` in the model's precision
            (after rounding when ``quantize=True``);
        pred, probs [B, K], prob_true, prob_target (NaN without a target): the model on ``adv``;
        queries: model forward images spent on each image (search, checks and the final pass);
        gradients: backward passes per image (0 for gradient-free attacks);
        iterations: the attack's iterations per image (where it stopped);
        l0 (pixels changed), l2, linf: :func:`pyadv.metrics.lp_norms` of adv - x.
    Provenance: ``attack`` (registry name), ``options`` (every option, defaults included),
    ``seed``, ``versions`` (pyadv, torch), ``time_s`` (wall time of the call), ``precision``
    (``asked``, ``search``: the precision the search ran in, ``model``, ``band``: the relative
    logit band set against the search, None where unmeasured; ``search_successes``,
    ``failed_check``: claims the check refuted, ``found_by_check``, ``fallback`` and
    ``fallback_success``: images attacked again in float32), ``profile`` (seconds in the
    model's passes and in total: where the time went; with ``compile``, ``compilations``,
    ``compile_s`` and ``compiled_used``).
    ``extras``: attack-specific per-image tensors (``result.extras["m"]`` for FIPSO).
    """
    x: torch.Tensor
    adv: torch.Tensor
    y: torch.Tensor
    target: torch.Tensor
    success: torch.Tensor
    pred: torch.Tensor
    probs: torch.Tensor
    prob_true: torch.Tensor
    prob_target: torch.Tensor
    queries: torch.Tensor
    gradients: torch.Tensor
    iterations: torch.Tensor
    l0: torch.Tensor
    l2: torch.Tensor
    linf: torch.Tensor
    attack: str = ""
    options: dict = field(default_factory=dict)
    seed: Optional[int] = None
    versions: dict = field(default_factory=dict)
    time_s: float = 0.0
    precision: dict = field(default_factory=dict)
    profile: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    # --- derived ------------------------------------------------------------------------

    @property
    def perturbation(self) -> torch.Tensor:
        """adv - x."""
        return self.adv - self.x

    def __len__(self) -> int:
        return len(self.adv)

    def ssim(self) -> torch.Tensor:
        """SSIM of each adversarial image against its clean image [B] (computed once)."""
        if "ssim" not in self._cache:
            from ..metrics import ssim

            self._cache["ssim"] = ssim(self.adv, self.x, data_range=1.0) if len(self) else self.x.new_zeros(0)
        return self._cache["ssim"]

    def pass_score(self) -> torch.Tensor:
        """PASS (Rozsa et al. 2016) of each adversarial image against its clean image [B]
        (computed once)."""
        if "pass" not in self._cache:
            from ..metrics import pass_score

            self._cache["pass"] = pass_score(self.adv, self.x) if len(self) else self.x.new_zeros(0)
        return self._cache["pass"]

    def summary(self) -> dict[str, Any]:
        """Success rate; mean and median L0, L2, L-inf over the successful images; queries
        and gradients per success (everything spent on the batch over the successes); time."""
        n = len(self)
        s = self.success.bool()
        ns = int(s.sum())

        def stats(v: torch.Tensor) -> dict[str, float]:
            v = v[s].double()
            if not len(v):
                return {"mean": math.nan, "median": math.nan}
            return {"mean": float(v.mean()), "median": float(v.median())}

        total_q = int(self.queries.sum())
        return {
            "attack": self.attack, "images": n, "successes": ns,
            "success_rate": ns / n if n else math.nan,
            "l0": stats(self.l0), "l2": stats(self.l2), "linf": stats(self.linf),
            "queries_total": total_q,
            "queries_per_success": total_q / ns if ns else math.inf,
            "gradients_per_success": int(self.gradients.sum()) / ns if ns else math.inf,
            "time_s": self.time_s,
            "images_per_s": n / self.time_s if self.time_s > 0 else math.nan,
        }

    # --- selection ----------------------------------------------------------------------

    def __getitem__(self, index) -> "AttackResult":
        """A sub-result: ``result[mask]``, ``result[idx]`` or ``result[a:b]``."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        if isinstance(index, torch.Tensor):
            index = index.to(self.adv.device)
        per = {f: getattr(self, f)[index] for f in PER_IMAGE}
        extras = {k: (v[index.to(v.device) if isinstance(index, torch.Tensor) else index]
                      if isinstance(v, torch.Tensor) and v.dim() and len(v) == len(self) else v)
                  for k, v in self.extras.items()}
        cache = {k: v[index] for k, v in self._cache.items()}
        return replace(self, **per, extras=extras, _cache=cache)

    # --- files --------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """One safetensors file (tensors on the CPU) with the provenance as JSON in its
        metadata; written atomically."""
        from safetensors.torch import save_file

        # Cloned: safetensors refuses tensors that share memory (an extra may be y itself).
        tensors = {f: getattr(self, f).detach().cpu().clone(memory_format=torch.contiguous_format)
                   for f in PER_IMAGE}
        for k, v in self.extras.items():
            if not isinstance(v, torch.Tensor):
                raise TypeError(f"extras[{k!r}] must be a tensor to be saved, got {type(v).__name__}")
            tensors["extras." + k] = v.detach().cpu().clone(memory_format=torch.contiguous_format)
        meta = {"format": _FORMAT, "attack": self.attack, "options": self.options, "seed": self.seed,
                "versions": self.versions, "time_s": self.time_s, "precision": self.precision,
                "profile": self.profile}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"pyadv": json.dumps(meta)}))

    @classmethod
    def load(cls, path: str | os.PathLike, device=None) -> "AttackResult":
        """Reads what :meth:`save` wrote (no unpickling)."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as f:
            raw = (f.metadata() or {}).get("pyadv")
            if raw is None:
                raise ValueError(f"{path} is not a saved pyadv AttackResult (no 'pyadv' metadata)")
            meta = json.loads(raw)
            if meta.get("format") != _FORMAT:
                raise ValueError(f"{path}: unknown result format {meta.get('format')!r}, expected {_FORMAT!r}")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if device is not None:
            tensors = {k: v.to(device) for k, v in tensors.items()}
        per = {f: tensors[f] for f in PER_IMAGE}
        extras = {k[len("extras."):]: v for k, v in tensors.items() if k.startswith("extras.")}
        return cls(**per, attack=meta["attack"], options=meta["options"], seed=meta["seed"],
                   versions=meta["versions"], time_s=meta["time_s"], precision=meta.get("precision", {}),
                   profile=meta.get("profile", {}), extras=extras)

    def equal(self, other: "AttackResult") -> bool:
        """Same tensors (NaN equal to NaN) and the same provenance, time excepted."""
        for f in fields(self):
            if f.name in ("_cache", "time_s", "profile"):
                continue
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name == "extras":
                if a.keys() != b.keys() or not all(_same(a[k], b[k]) for k in a):
                    return False
            elif isinstance(a, torch.Tensor):
                if not _same(a, b):
                    return False
            elif a != b:
                return False
        return True


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal shape, dtype and values, NaN equal to NaN."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    a, b = a.cpu(), b.cpu()
    return torch.equal(a, b) or (a.is_floating_point() and bool(((a == b) | (a.isnan() & b.isnan())).all()))


def norms_of(adv: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """l0 (pixels), l2, linf of adv - x, on adv's device."""
    n = lp_norms(adv, x)
    return {k: n[k].to(adv.device) for k in ("l0", "l2", "linf")}
