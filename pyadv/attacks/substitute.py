"""The substitute black-box attack (Papernot et al. 2017, "Practical Black-Box Attacks against
Machine Learning"; the Raissi notes, paper 003, "Algorithm 1 - Substitute DNN Training").

The oracle answers labels only. A substitute F is trained on S_0 labelled by the oracle; each
round adds the Jacobian-based augmentation S_{rho+1} = S_rho U {x + lambda_rho sgn(J_F(x)[O(x)])},
with lambda_rho = lambda (-1)^floor(rho / tau) (the paper's periodic step, so that the new points
do not drift away from the data); then a white-box attack of the library on F, transferred to
the oracle.
"""
from __future__ import annotations

import time

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..optim.flat_adam import FlatAdam
from ._base import Attack, CommonOptions, RawResult, attack_class, int_option, number_option, option_error, register

ARCHITECTURES = ("lenet", "mlp")


def oracle_labels(oracle: Callable, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """The oracle's labels of x, checked: one integer label per image."""
    out = []
    for i in range(0, len(x), batch_size):
        with torch.no_grad():
            lab = oracle(x[i:i + batch_size])
        n = len(x[i:i + batch_size])
        if not isinstance(lab, torch.Tensor) or lab.shape != (n,) or lab.dtype.is_floating_point or lab.dtype == torch.bool:
            got = f"{lab.dtype} tensor of shape {tuple(lab.shape)}" if isinstance(lab, torch.Tensor) else type(lab).__name__
            raise ValueError(f"the oracle must return one integer label per image ({n}), got {got}; wrap a "
                             "classifier as lambda x: model(x).argmax(1)")
        out.append(lab.long().to(x.device))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=x.device)


def make_substitute(architecture: str, sample: torch.Tensor, num_classes: int) -> nn.Module:
    """A fresh substitute for images shaped like ``sample`` [C, H, W]."""
    C, H, W = sample.shape
    if architecture == "lenet" and H == W and H >= 16 and H % 4 == 0:
        from ..models import LeNet5

        return LeNet5(in_channels=C, num_classes=num_classes, image_size=H)
    return nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, 200), nn.ReLU(), nn.Linear(200, 200), nn.ReLU(),
                         nn.Linear(200, num_classes))


@dataclass
class Substitute:
    """A trained substitute: the model, the oracle queries spent and a row per round
    (training-set size, queries so far, agreement with the oracle on the training set)."""
    model: nn.Module
    oracle_queries: int
    history: list = field(default_factory=list)
    #: wall time in passes of a model: the oracle's forwards and the substitute's forwards and
    #: backwards (what is left of the training is the optimiser's updates and bookkeeping)
    pass_s: float = 0.0

    def agreement(self, oracle: Callable, x: torch.Tensor) -> float:
        """The fraction of x on which the substitute and the oracle give the same label."""
        with torch.no_grad():
            return float((self.model(x).argmax(1) == oracle_labels(oracle, x)).float().mean())


def train_substitute(oracle: Callable, initial: torch.Tensor, num_classes: int, *, rounds: int = 6,
                     epochs: int = 10, lam: float = 0.1, tau: int = 3, architecture: str = "mlp",
                     lr: float = 1e-3, batch_size: int = 64, seed: int = 0) -> Substitute:
    """Algorithm 1 of Papernot et al.: ``rounds`` substitute training epochs rho (max_rho), each
    training F for ``epochs`` passes over S_rho labelled by the oracle, then (but after the last)
    the Jacobian-based augmentation. Only new points are sent to the oracle."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    g = torch.Generator().manual_seed(seed)
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # the substitute's initial weights
    try:
        model = make_substitute(architecture, initial[0], num_classes).to(initial.device)
    finally:
        torch.random.set_rng_state(torch_state)
    S = initial.detach().clone()
    t0 = time.perf_counter()
    labels = oracle_labels(oracle, S)
    pass_s = time.perf_counter() - t0
    queries = len(S)
    history = []
    # torch.optim.Adam's update on one flat buffer: its 1500 steps on the MLP were most of the
    # time outside the model's passes, and more of that was Python than arithmetic
    opt = FlatAdam(model.parameters(), lr=lr)
    for rho in range(rounds):
        model.train()
        for _ in range(epochs):
            perm = torch.randperm(len(S), generator=g).to(S.device)
            # the epoch's order gathered once: each batch is then a view, not a gather per step
            S_epoch, labels_epoch = S[perm], labels[perm]
            for i in range(0, len(S), batch_size):
                opt.zero_grad()
                t0 = time.perf_counter()
                F.cross_entropy(model(S_epoch[i:i + batch_size]), labels_epoch[i:i + batch_size]).backward()
                pass_s += time.perf_counter() - t0
                opt.step()
        model.eval()
        t0 = time.perf_counter()
        with torch.no_grad():
            agree = float((model(S).argmax(1) == labels).float().mean())
        pass_s += time.perf_counter() - t0
        history.append({"round": rho, "train_size": len(S), "oracle_queries": queries, "train_agreement": agree})
        if rho == rounds - 1:
            break
        step = lam * (-1) ** (rho // tau)
        t0 = time.perf_counter()
        xs = S.clone().requires_grad_(True)
        (jac,) = torch.autograd.grad(model(xs).gather(1, labels[:, None]).sum(), xs)
        new = (S + step * jac.sign()).clamp(0, 1)
        new_labels = oracle_labels(oracle, new)
        pass_s += time.perf_counter() - t0
        S = torch.cat([S, new])
        labels = torch.cat([labels, new_labels])
        queries += len(new)
    opt.release()
    for p in model.parameters():
        p.requires_grad_(False)
    return Substitute(model=model.eval(), oracle_queries=queries, history=history, pass_s=pass_s)


def transfer_table(substitute: Substitute, oracle: Callable, x: torch.Tensor, y: torch.Tensor,
                   eps=(0.05, 0.1, 0.2, 0.3), white_box: str = "fgs", seed: int = 0, **white_box_options) -> dict:
    """The substitute's agreement with the oracle on x, and per eps the share of x whose label
    the oracle changes under the white-box attack's images on the substitute (transfer) and
    under sign noise of the same L-inf (the baseline a transfer must beat)."""
    y = torch.as_tensor(y, device=x.device).long()
    rows = []
    gen = torch.Generator().manual_seed(seed)
    for e in eps:
        adv = attack_class(white_box)(substitute.model, eps=e, seed=seed, **white_box_options)(x, y).adv
        noise = (x + e * torch.randn(x.shape, generator=gen).to(x.device).sign()).clamp(0, 1)
        rows.append({"eps": float(e),
                     "transfer_success": float((oracle_labels(oracle, adv) != y).float().mean()),
                     "noise_success": float((oracle_labels(oracle, noise) != y).float().mean())})
    return {"agreement": substitute.agreement(oracle, x), "oracle_queries": substitute.oracle_queries,
            "white_box": white_box, "rows": rows}


@dataclass(frozen=True)
class SubstituteOptions(CommonOptions):
    """initial: how many of the call's images form S_0 (the paper's 150; all when fewer);
    rounds (max_rho, 6), epochs per round (10), lam (0.1), tau (3: the sign of lambda flips
    every tau rounds), architecture ("mlp": two hidden layers of 200, the default: on the digits
    CNN as oracle it agreed with it on 96 % of the test split after 6 rounds in 5 s, against 94 %
    in 33 s for "lenet", LeNet-5), lr, batch_size: the substitute's
    training; white_box: a registered attack run on the substitute (default "fgs") with
    white_box_options (default eps 0.3), its adversarials transferred to the oracle."""
    initial: int = 150
    rounds: int = 6
    epochs: int = 10
    lam: float = 0.1
    tau: int = 3
    architecture: str = "mlp"
    lr: float = 1e-3
    batch_size: int = 64
    white_box: str = "fgs"
    white_box_options: dict = field(default_factory=lambda: {"eps": 0.3})

    def __post_init__(self):
        super().__post_init__()
        for name in ("initial", "rounds", "epochs", "tau", "batch_size"):
            int_option(name, getattr(self, name), 1)
        number_option("lam", self.lam, positive=True)
        number_option("lr", self.lr, positive=True)
        if self.architecture not in ARCHITECTURES:
            raise option_error("architecture", self.architecture, f"one of {ARCHITECTURES}")
        if self.white_box == "substitute":
            raise option_error("white_box", self.white_box, "a white-box attack, not the substitute attack itself")
        try:
            cls = attack_class(self.white_box)
        except ValueError as e:
            raise option_error("white_box", self.white_box, str(e)) from None
        if not isinstance(self.white_box_options, dict):
            raise option_error("white_box_options", self.white_box_options, "a dict of the white-box attack's options")
        cls.validated_options(**self.white_box_options)
        object.__setattr__(self, "white_box_options", dict(self.white_box_options))

    def as_dict(self):
        out = super().as_dict()
        out["white_box_options"] = dict(self.white_box_options)
        return out


@register("substitute")
class SubstituteAttack(Attack):
    """Papernot et al.'s black-box attack on the model as a label-only oracle: a substitute
    trained from the first ``initial`` images of the call, the white-box attack on it, its
    images judged by the model. ``queries`` counts the final check of each image only; the
    labels the training asked the oracle for (shared by the batch) are in ``extras``:
    ``oracle_queries`` (in total), with ``substitute_agreement`` (on the call's images) and
    ``round_train_size``. ``profile["model_s"]`` counts the oracle's and the substitute's passes
    (training included): both are model passes, the rest of the training is not."""

    Options = SubstituteOptions

    def _run(self, x, y, target, runner, index):
        o = self.options
        model = self.model

        def oracle(v):  # labels only: the attack never sees the model's scores or gradients
            return model(v).argmax(1)

        sub = train_substitute(oracle, x[:o.initial], runner.num_classes, rounds=o.rounds, epochs=o.epochs,
                               lam=o.lam, tau=o.tau, architecture=o.architecture, lr=o.lr,
                               batch_size=o.batch_size, seed=o.seed)
        # the model's own passes are the final checks: the precision is the white-box attack's
        white = attack_class(o.white_box)(sub.model, **{"seed": o.seed, "precision": o.precision,
                                                        **o.white_box_options})
        r = white(x, y, target, index=index)
        t0 = time.perf_counter()
        agree = sub.agreement(oracle, x)
        # the time in the target's and the substitute's passes, so that a profile of this attack
        # says what is left outside models (the optimiser's updates, bookkeeping)
        runner.forward_s += sub.pass_s + r.profile["model_s"] + time.perf_counter() - t0
        B = len(x)
        # no search_success: the white-box attack's successes are on the substitute, and a
        # transfer that fails is the attack's result, not a precision error to fall back from
        return RawResult(adv=r.adv, iterations=r.iterations,
                         extras={"substitute_success": r.success,
                                 "oracle_queries": torch.full((B,), sub.oracle_queries, dtype=torch.long,
                                                              device=x.device),
                                 "substitute_agreement": torch.full((B,), agree, device=x.device),
                                 "round_train_size": torch.tensor([h["train_size"] for h in sub.history],
                                                                  device=x.device)})


__all__ = ["train_substitute", "transfer_table", "Substitute", "SubstituteAttack", "oracle_labels"]
