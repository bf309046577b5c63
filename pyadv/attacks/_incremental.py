"""Incremental forward passes for sparse candidates: the logits of images that differ from a
base image in a few pixels, computed layer by layer only where they differ.

A sparse attack (FIPSO: m = 20 of 784 pixels) asks for hundreds of candidates per image that
all share the image and the positions of their changed pixels. Through a net of the form

    [Normalize] -> [Conv2d -> ReLU / MaxPool2d ...] x S -> Flatten -> Linear -> (ReLU / Linear ...)

the change stays local until the flatten: conv(x + d) = conv(x) + conv(d), so each stage
(``ops.sparse_conv_stage``) needs the multiply-adds of the changed inputs only, at the pooled
outputs they reach, and the first linear layer needs the columns of the changed features only.
The base image goes through the net once; each candidate then costs, on the digits CNN with 20
gradient-chosen pixels, about a quarter of a dense forward's multiply-adds (its second
convolution sees 69 of 196 positions changed).

Whether a model qualifies is read from its torch.fx graph (the runner's search copy, batch norm
already folded into the convolutions): a chain of the modules above (a leading
``pyadv.models.Normalize`` scales each change by 1 / std), each convolution with
stride 1, dilation 1, one group and zero padding, each max-pool with kernel = stride. Anything
else (a residual block, an average pool, a batch norm left unfolded) returns None, and
the runner renders and forwards the candidates as before.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..models.normalize import normalize

#: Use the incremental pass when its estimated multiply-adds are at most this share of a dense
#: forward's: at the digits CNN's 0.32 it ran 2.9x the dense search copy's candidates/s
#: (benchmarks/attacks_sparse.py), about oneDNN's rate per multiply-add; the margin is for the
#: head and the bookkeeping, which do not shrink with the share.
MAX_WORK_SHARE = 0.6
#: A reduced-precision search's dense forward is this much faster than float32's on a CPU with
#: AVX-512 BF16 (the digits CNN's search copy: 15.2k against 8.7k candidates/s); the float32
#: incremental pass replaces it where its work share is below MAX_WORK_SHARE / this.
REDUCED_DENSE_SPEEDUP = 1.7


@dataclass
class _Stage:
    weight: torch.Tensor  # [kh, kw, Cin, Cout], the kernel's layout
    conv: nn.Conv2d
    pad: tuple
    relu: bool = False
    pool: int = 1


class SparseForward:
    """The incremental form of a model, or None from :meth:`of` when the model is not a chain
    it can follow. :meth:`prepare` runs the base images once; :meth:`logits` evaluates
    candidates that add values at the same component indices."""

    def __init__(self, stages: list, head: list, norm: Optional[tuple] = None):
        self.stages, self.head = stages, head
        self.norm = norm  # (mean, std) [C] of a leading pyadv.models.Normalize, or None

    @classmethod
    def of(cls, model: nn.Module) -> Optional["SparseForward"]:
        try:
            gm = model if isinstance(model, torch.fx.GraphModule) else torch.fx.symbolic_trace(model)
        except Exception:  # not traceable: no incremental form
            return None
        nodes = [n for n in gm.graph.nodes]
        if not nodes or nodes[0].op != "placeholder" or nodes[-1].op != "output" or \
                sum(n.op == "placeholder" for n in nodes) != 1:
            return None
        stages: list = []
        head: list = []
        norm = None
        flat = False
        prev = nodes[0]
        for node in nodes[1:-1]:
            if node.op == "get_attr":
                continue  # a constant; only a normalisation may use one (checked there)
            extra = [a for a in list(node.args[1:]) + list(node.kwargs.values()) if isinstance(a, torch.fx.Node)]
            if len(node.users) != 1 or not node.args or node.args[0] is not prev:
                return None
            if node.op == "call_function" and node.target is normalize and len(node.args) == 3 and \
                    not node.kwargs and all(a.op == "get_attr" for a in extra) and len(extra) == 2:
                if stages or norm is not None:
                    return None
                try:  # Normalize's mean and std are buffers
                    norm = tuple(gm.get_buffer(a.target).detach().flatten() for a in extra)
                except AttributeError:
                    return None
                prev = node
                continue
            if extra:
                return None
            kind = _kind(gm, node)
            if kind is None:
                return None
            name, mod = kind
            if name == "skip":
                pass
            elif flat:
                if name not in ("linear", "relu"):
                    return None
                head.append(mod if mod is not None else nn.ReLU())
            elif name == "conv":
                stages.append(_Stage(mod.weight.detach().permute(2, 3, 1, 0).contiguous(), mod, mod.padding))
            elif not stages:
                return None  # something before the first convolution
            elif name == "relu":
                stages[-1].relu = True
            elif name == "pool":
                stages[-1].pool *= mod
            elif name == "flatten":
                flat = True
            else:
                return None
            prev = node
        if nodes[-1].args[0] is not prev or not stages or not head or not isinstance(head[0], nn.Linear):
            return None
        if norm is not None and norm[0].numel() != stages[0].weight.shape[2]:
            return None
        return cls(stages, head, norm)

    def prepare(self, base: torch.Tensor, idx: torch.Tensor) -> Optional["SparsePlan"]:
        """The plan for candidates over base [G, C, H, W] at component indices idx [G, m], or
        None (a component repeated in a row, a dtype other than float32/64, a flatten whose size
        differs from the linear layer's). Whether it pays is the caller's call: ``work_share``."""
        G, C, H, W = base.shape
        P = H * W
        if idx.shape[0] != G or base.dtype not in (torch.float32, torch.float64):
            return None
        srt = idx.sort(1).values
        if bool((srt[:, 1:] == srt[:, :-1]).any()):
            return None  # a repeated component: sparse_perturb adds both, one slot cannot
        flat = base.reshape(G, -1)
        mask = torch.zeros(G, P, dtype=torch.bool, device=base.device)
        where = idx % P  # spatial position of each component (channel idx // P)
        mask.scatter_(1, where, True)
        slots, pos = _slots(mask)
        # column of each changed component in the first stage's delta [A, C]
        col = (slots.gather(1, where).long() * C + idx // P).contiguous()
        plan = SparsePlan(self, G, idx.contiguous(), flat.gather(1, idx), col, int(pos.shape[1]), C)
        act, Hin, Win = base, H, W
        if self.norm is not None:
            mean, std = (t.to(base.device, base.dtype) for t in self.norm)
            act = (base - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
            plan.scale = (1 / std)[idx // P]  # a change of x_i changes the normalised input by it / std
        dense = sparse = 0.0
        with torch.inference_mode():
            for s in self.stages:
                w = s.weight.to(base.dtype)
                kh, kw, Cin, Cout = w.shape
                conv = F.conv2d(act, s.conv.weight.to(base.dtype), None if s.conv.bias is None else
                                s.conv.bias.to(base.dtype), padding=s.pad)
                Hc, Wc = conv.shape[2:]
                Hp, Wp = Hc // s.pool, Wc // s.pool
                # affected conv outputs, with how many changed inputs each one's window holds
                m = mask.view(G, 1, Hin, Win).to(base.dtype)
                count = F.conv2d(m, m.new_ones(1, 1, kh, kw), padding=s.pad).view(G, Hc, Wc)
                reach = F.max_pool2d((count > 0).to(base.dtype)[:, None], s.pool).view(G, Hp * Wp) > 0
                window = F.avg_pool2d(count[:, None, :Hp * s.pool, :Wp * s.pool], s.pool).view(G, Hp * Wp)
                sparse += float((window * reach).sum()) * s.pool * s.pool * Cin * Cout
                dense += G * Hc * Wc * kh * kw * Cin * Cout
                out_slots, outpos = _slots(reach)
                act = conv.clamp_min(0) if s.relu else conv
                act = F.max_pool2d(act, s.pool) if s.pool > 1 else act
                pooled = act.permute(0, 2, 3, 1).reshape(G, Hp * Wp, Cout)
                plan.stages.append(_StagePlan(slots, outpos, conv.permute(0, 2, 3, 1).reshape(G, Hc * Wc, Cout)
                                              .contiguous(), _rows(pooled, outpos), w, Win, s.pad, s.pool, s.relu))
                mask, slots, Hin, Win = reach, out_slots, Hp, Wp
            lin = self.head[0]
            feats = act.flatten(1)
            if feats.shape[1] != lin.in_features:
                return None
            plan.base_h = F.linear(feats, lin.weight.to(base.dtype), None if lin.bias is None else
                                   lin.bias.to(base.dtype))
            # the first linear layer's columns of the changed features, in the order of the last
            # stage's output rows (position-major, channel-minor); padding rows get zero columns
            last = plan.stages[-1]
            outpos = last.outpos.long()
            Cout = last.weight.shape[3]
            feature = torch.arange(Cout, device=base.device)[None, None, :] * (Hin * Win) + \
                outpos.clamp_min(0)[:, :, None]
            wt = lin.weight.to(base.dtype).t()  # [F, O]
            cols = wt[feature.reshape(-1)].view(G, -1, Cout, wt.shape[1])
            plan.head_w = cols.masked_fill((outpos < 0)[:, :, None, None], 0).view(G, -1, wt.shape[1]).contiguous()
            sparse += float((outpos >= 0).sum()) * Cout * wt.shape[1]
            dense += G * lin.in_features * lin.out_features
        plan.work_share = sparse / dense if dense else 1.0
        return plan


@dataclass
class _StagePlan:
    """One stage of a plan: per base image the changed input positions (slots), the pooled
    outputs they reach (outpos), the base conv output and the pooled activations there; then
    the stage's kernel layout and geometry, shared by every image."""
    slots: torch.Tensor
    outpos: torch.Tensor
    base: torch.Tensor
    pooled: torch.Tensor
    weight: torch.Tensor
    in_w: int
    pad: tuple
    pool: int
    relu: bool

    def select(self, rows: torch.Tensor) -> "_StagePlan":
        return replace(self, slots=self.slots[rows], outpos=self.outpos[rows], base=self.base[rows],
                       pooled=self.pooled[rows])

    def change(self, delta: torch.Tensor) -> torch.Tensor:
        """The change of the stage's pooled outputs at outpos [G, N, Q, Cout] for the change
        of its input delta [G, N, A, Cin]."""
        out = ops.sparse_conv_stage(delta, self.slots, self.outpos, self.base, self.weight, self.in_w, self.pad,
                                    self.pool, self.relu)
        return out.sub_(self.pooled[:, None])


class SparsePlan:
    """What :meth:`SparseForward.prepare` computed for G base images: the stages
    (:class:`_StagePlan`), the first linear layer's base output and columns. ``work_share``: the
    estimated multiply-adds of a candidate over a dense forward's."""

    def __init__(self, net: SparseForward, G: int, idx, x_at, col, A: int, C: int):
        self.net, self.G, self.idx, self.x_at, self.col, self.A, self.C = net, G, idx, x_at, col, A, C
        self.scale: Optional[torch.Tensor] = None  # [G, m] per changed component, behind a Normalize
        self.stages: list = []
        self.base_h: Optional[torch.Tensor] = None
        self.head_w: Optional[torch.Tensor] = None
        self.work_share = 1.0

    def select(self, rows: torch.Tensor) -> "SparsePlan":
        """The plan of the base images ``rows`` (the active images of a call)."""
        out = SparsePlan(self.net, len(rows), self.idx[rows], self.x_at[rows], self.col[rows], self.A, self.C)
        out.stages = [s.select(rows) for s in self.stages]
        out.base_h, out.head_w, out.work_share = self.base_h[rows], self.head_w[rows], self.work_share
        out.scale = None if self.scale is None else self.scale[rows]
        return out

    def logits(self, values: torch.Tensor) -> torch.Tensor:
        """Logits [G, N, K] of the candidates base + values [G, N, m] at idx, the changed
        components clamped to [0, 1] (``ops.sparse_perturb``'s images)."""
        G, N, m = values.shape
        with torch.inference_mode():
            change = (self.x_at[:, None, :] + values.to(self.x_at.dtype)).clamp_(0, 1).sub_(self.x_at[:, None, :])
            if self.scale is not None:
                change.mul_(self.scale[:, None, :])
            delta = change.new_zeros(G, N, self.A * self.C)
            delta.scatter_(2, self.col[:, None, :].expand(G, N, m), change)
            delta = delta.view(G, N, self.A, self.C)
            for s in self.stages:
                delta = s.change(delta)
            h = torch.baddbmm(self.base_h[:, None, :], delta.view(G, N, -1), self.head_w)
            z = h.view(G * N, -1)
            for mod in self.net.head[1:]:
                z = mod(z)
            return z.view(G, N, -1)


def _slots(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For a [G, P] mask: slots [G, P] int32 (the rank of each set position in its row, -1
    elsewhere) and positions [G, A] int32 (each row's set positions in order, -1 padding)."""
    G, P = mask.shape
    rank = mask.long().cumsum(1) - 1
    slots = torch.where(mask, rank, -1).to(torch.int32).contiguous()
    A = max(int(mask.sum(1).max()) if G else 0, 1)
    pos = torch.full((G, A), -1, dtype=torch.int32, device=mask.device)
    g, p = mask.nonzero(as_tuple=True)
    pos[g, rank[g, p]] = p.to(torch.int32)
    return slots, pos


def _rows(pooled: torch.Tensor, outpos: torch.Tensor) -> torch.Tensor:
    """pooled [G, Hp * Wp, C] at outpos [G, Q] (-1: zeros) -> [G, Q, C]."""
    got = pooled.gather(1, outpos.clamp_min(0).long()[:, :, None].expand(-1, -1, pooled.shape[2]))
    return got.masked_fill((outpos < 0)[:, :, None], 0).contiguous()


def _kind(gm: torch.fx.GraphModule, node) -> Optional[tuple]:
    """(name, module or pool factor) of a node the incremental pass can follow, else None."""
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        if isinstance(mod, (nn.Dropout, nn.Identity)):
            return "skip", None
        if isinstance(mod, nn.ReLU):
            return "relu", None
        if isinstance(mod, nn.Linear):
            return "linear", mod
        if isinstance(mod, nn.Flatten):
            return ("flatten", None) if mod.start_dim == 1 and mod.end_dim == -1 else None
        if isinstance(mod, nn.Conv2d):
            ok = mod.stride == (1, 1) and mod.dilation == (1, 1) and mod.groups == 1 and \
                mod.padding_mode == "zeros" and isinstance(mod.padding, tuple)
            return ("conv", mod) if ok else None
        if isinstance(mod, nn.MaxPool2d):
            k, st = _pair(mod.kernel_size), _pair(mod.stride if mod.stride is not None else mod.kernel_size)
            ok = k == st and k[0] == k[1] and _pair(mod.padding) == (0, 0) and _pair(mod.dilation) == (1, 1) and \
                not mod.ceil_mode and not mod.return_indices
            return ("pool", k[0]) if ok else None
        return None
    if node.op == "call_function":
        if node.target in (F.relu, torch.relu, torch.relu_):
            return "relu", None
        if node.target is torch.flatten and tuple(node.args[1:]) in ((1,), (1, -1)) and not node.kwargs:
            return "flatten", None
        return None
    if node.op == "call_method" and node.target in ("relu", "relu_") and len(node.args) == 1:
        return "relu", None
    return None


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)
