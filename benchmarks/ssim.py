"""SSIM forward and forward+backward: pyadv's fused kernels against the pure-PyTorch
reference (separable conv2d, autograd) and scikit-image (forward only, one image at a time),
on B=64 RGB 32x32 images and B=8 grey 224x224 images.

    python benchmarks/ssim.py [--threads 2]
"""
from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import structural_similarity

from common import interleaved, machine, parser, setup_threads, write_results

from pyadv.metrics import ssim
from pyadv.reference import ssim_reference

SHAPES = [(64, 3, 32, 32), (8, 1, 224, 224)]


def main() -> None:
    args = parser(__doc__).parse_args()
    setup_threads(args.threads)
    rounds = 5 if args.quick else args.repeat
    rows = []
    for shape in SHAPES:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(shape, generator=g)
        y = (x + 0.05 * torch.randn(shape, generator=g)).clamp(0, 1)
        xg, yg = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        xn, yn = x.numpy(), y.numpy()

        def sk():
            return [structural_similarity(xn[i], yn[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                          data_range=1.0, channel_axis=0) for i in range(len(xn))]

        torch.testing.assert_close(ssim(x, y), torch.tensor(sk(), dtype=torch.float32), rtol=0, atol=1e-5)
        fwd = interleaved({"pyadv": lambda: ssim(x, y), "torch_reference": lambda: ssim_reference(x, y),
                           "scikit_image": sk}, rounds=rounds)
        bwd = interleaved({"pyadv": lambda: torch.autograd.grad(ssim(xg, yg).sum(), (xg, yg)),
                           "torch_reference": lambda: torch.autograd.grad(ssim_reference(xg, yg).sum(), (xg, yg))},
                          rounds=rounds)
        row = {"shape": list(shape),
               "forward_s": {k: v["median_s"] for k, v in fwd.items()},
               "forward_backward_s": {k: v["median_s"] for k, v in bwd.items()},
               "forward_speedup_vs": fwd["pyadv"]["ratios_to"],
               "forward_backward_speedup_vs": bwd["pyadv"]["ratios_to"]}
        rows.append(row)
        print(f"{shape}: forward {1e3 * fwd['pyadv']['median_s']:.2f} ms, "
              f"{row['forward_speedup_vs']['torch_reference']:.1f}x torch, {row['forward_speedup_vs']['scikit_image']:.1f}x "
              f"scikit-image; forward+backward {row['forward_backward_speedup_vs']['torch_reference']:.1f}x torch autograd")
    print(f"wrote {write_results('ssim', {'family': 'ssim', 'machine': machine(args.threads), 'results': rows}, args.out)}")


if __name__ == "__main__":
    main()
