// Argument checks and the Gaussian window of the SSIM ops, shared by every backend.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace pyadv {
namespace ssim {

struct SsimDims {
  int64_t B, C, H, W, Hv, Wv;
};

// x, y [B, C, H, W], one floating dtype and device; win odd in [3, 31] and <= H, W; sigma,
// data_range, K1, K2 > 0.
SsimDims check_ssim(const at::Tensor& x, const at::Tensor& y, int64_t win, double sigma, double K1, double K2,
                    double data_range);
// The normalised 1-D Gaussian of the window (scipy.ndimage's, as scikit-image uses it).
std::vector<double> gaussian_window(int64_t win, double sigma);

}  // namespace ssim
}  // namespace pyadv
