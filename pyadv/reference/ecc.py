"""Reference of the ECC inner step (the ``ecc_moments`` op): per template pixel, the bilinear
sample of the image and its gradients at the warped position (written out as the warp kernel
computes it), the validity mask and the motion's Jacobian, then plain sums."""
from __future__ import annotations

import torch

MOTION_CODES = {"translation": 0, "euclidean": 1, "affine": 2, "homography": 3}
N_PARAMS = {0: 2, 1: 3, 2: 6, 3: 8}


def _bilinear(plane: torch.Tensor, ix, iy, ax, ay) -> torch.Tensor:
    """plane [H, W] sampled at integer corners (ix, iy) and fractions (ax, ay); outside is 0."""
    H, W = plane.shape

    def at(r, c):
        ok = (r >= 0) & (r < H) & (c >= 0) & (c < W)
        return torch.where(ok, plane[r.clamp(0, H - 1), c.clamp(0, W - 1)], torch.zeros((), dtype=plane.dtype))

    return (1 - ay) * ((1 - ax) * at(iy, ix) + ax * at(iy, ix + 1)) + ay * ((1 - ax) * at(iy + 1, ix) + ax * at(iy + 1, ix + 1))


def jacobian(motion: int, gx, gy, X, Y, M) -> torch.Tensor:
    """[n, P] Jacobian of the warped image with respect to the motion's parameters (OpenCV's order)."""
    if motion == 0:
        return torch.stack([gx, gy])
    if motion == 2:
        return torch.stack([gx * X, gy * X, gx * Y, gy * Y, gx, gy])
    if motion == 1:
        c, s = M[0, 0], M[1, 0]
        hx, hy = -(X * s) - (Y * c), (X * c) - (Y * s)
        return torch.stack([gx * hx + gy * hy, gx, gy])
    iden = 1.0 / (X * M[2, 0] + Y * M[2, 1] + 1.0)
    hx = (-X * M[0, 0] - Y * M[0, 1] - M[0, 2]) * iden
    hy = (-X * M[1, 0] - Y * M[1, 1] - M[1, 2]) * iden
    gxd, gyd = gx * iden, gy * iden
    t = hx * gxd + hy * gyd
    return torch.stack([gxd * X, gyd * X, t * X, gxd * Y, gyd * Y, t * Y, gxd, gyd])


def ecc_moments_reference(img: torch.Tensor, tmpl: torch.Tensor, M: torch.Tensor, motion: int,
                          margin: int = 0, ids=None) -> torch.Tensor:
    """img [B, 3, H, W] (image, x-gradient, y-gradient), tmpl [B, H, W], M [B, 3, 3] ->
    [B, K] float64: count, sum T, sum I, sum T^2, sum I^2, sum T I, sum J, sum J T, sum J I and
    the upper triangle of sum J J^T, over the template pixels at least ``margin`` inside whose
    source lies inside the image. With ``ids``, only those pairs, M [len(ids), 3, 3]."""
    if ids is not None:
        img, tmpl = img[ids], tmpl[ids]
    B, _, H, W = img.shape
    n = N_PARAMS[motion]
    out = torch.zeros(B, 6 + 3 * n + n * (n + 1) // 2, dtype=torch.float64)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    X, Y = xs.flatten(), ys.flatten()
    inner = (X >= margin) & (Y >= margin) & (X < W - margin) & (Y < H - margin)
    iu = torch.triu_indices(n, n)
    for b in range(B):
        m = M[b].double()
        Xs = m[0, 0] * X + m[0, 1] * Y + m[0, 2]
        Ys = m[1, 0] * X + m[1, 1] * Y + m[1, 2]
        Zs = m[2, 0] * X + m[2, 1] * Y + m[2, 2]
        ok = Zs != 0
        iz = 1.0 / torch.where(ok, Zs, torch.ones_like(Zs))
        sx, sy = Xs * iz, Ys * iz
        ok &= (sx > -2e9) & (sx < 2e9) & (sy > -2e9) & (sy < 2e9)
        sx, sy = torch.where(ok, sx, 0), torch.where(ok, sy, 0)
        fx, fy = sx.floor(), sy.floor()
        ix, iy, ax, ay = fx.long(), fy.long(), sx - fx, sy - fy
        cover = _bilinear(torch.ones(H, W, dtype=torch.float64), ix, iy, ax, ay)
        valid = ok & (cover > 0.999) & inner
        # Samples are rounded to the image's precision, as the warp returns them.
        v, gx, gy = (_bilinear(img[b, c].double(), ix, iy, ax, ay).to(img.dtype).double()[valid] for c in range(3))
        t = tmpl[b].double().flatten()[valid]
        J = jacobian(motion, gx, gy, X[valid], Y[valid], m)
        out[b, :6] = torch.stack([valid.sum().double(), t.sum(), v.sum(), (t * t).sum(), (v * v).sum(), (t * v).sum()])
        out[b, 6:6 + n] = J.sum(1)
        out[b, 6 + n:6 + 2 * n] = (J * t).sum(1)
        out[b, 6 + 2 * n:6 + 3 * n] = (J * v).sum(1)
        out[b, 6 + 3 * n:] = (J @ J.T)[iu[0], iu[1]]
    return out
