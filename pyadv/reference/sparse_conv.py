"""Reference of the incremental conv stage (``torch.ops.pyadv.sparse_conv_stage``): the whole
change of the input rebuilt as a dense image and put through F.conv2d, ReLU and max-pool."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def sparse_conv_stage_reference(delta, slots, outpos, base, weight, in_w, pad_h, pad_w, pool, relu):
    """delta [G, N, A, Cin], slots [G, Hin * Win] (-1 or a row of delta), outpos [G, Q] (-1 or a
    pooled position), base [G, Hc * Wc, Cout] (the base input's conv output), weight
    [kh, kw, Cin, Cout] -> [G, N, Q, Cout]: pooled, rectified conv(base input + change)."""
    G, N, A, Cin = delta.shape
    kh, kw, _, Cout = weight.shape
    Hin = slots.shape[1] // in_w
    Hc, Wc = Hin + 2 * pad_h - kh + 1, in_w + 2 * pad_w - kw + 1
    change = torch.zeros(G, N, Hin * in_w, Cin, dtype=delta.dtype)
    for g in range(G):
        for pos, a in enumerate(slots[g].tolist()):
            if a >= 0:
                change[g, :, pos] = delta[g, :, a]
    change = change.view(G * N, Hin, in_w, Cin).permute(0, 3, 1, 2)
    conv = F.conv2d(change, weight.permute(3, 2, 0, 1), padding=(pad_h, pad_w))
    pre = conv.view(G, N, Cout, Hc * Wc) + base.transpose(1, 2)[:, None]
    if relu:
        pre = pre.clamp_min(0)
    pooled = F.max_pool2d(pre.view(G * N, Cout, Hc, Wc), pool).view(G, N, Cout, -1)
    out = torch.zeros(G, N, outpos.shape[1], Cout, dtype=delta.dtype)
    for g in range(G):
        for j, q in enumerate(outpos[g].tolist()):
            if q >= 0:
                out[g, :, j] = pooled[g, :, :, q]
    return out
