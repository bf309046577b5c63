#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cmath>

#include "ssim_op.h"

namespace pyadv {
namespace ssim {

SsimDims check_ssim(const at::Tensor& x, const at::Tensor& y, int64_t win, double sigma, double K1, double K2,
                    double data_range) {
  TORCH_CHECK_VALUE(x.dim() == 4, "x must be an image batch [B, C, H, W], got ", x.sizes());
  TORCH_CHECK_VALUE(y.sizes() == x.sizes(), "y must have x's shape ", x.sizes(), ", got ", y.sizes());
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
                   "x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK_TYPE(y.scalar_type() == x.scalar_type(), "y must have x's dtype ", x.scalar_type(), ", got ",
                   y.scalar_type());
  TORCH_CHECK_VALUE(y.device() == x.device(), "y is on ", y.device(), " but x is on ", x.device());
  TORCH_CHECK_VALUE(win >= 3 && win <= 31 && win % 2 == 1, "win_size must be odd and in [3, 31], got ", win);
  TORCH_CHECK_VALUE(std::isfinite(sigma) && sigma > 0, "sigma must be > 0, got ", sigma);
  TORCH_CHECK_VALUE(std::isfinite(data_range) && data_range > 0, "data_range must be > 0, got ", data_range);
  TORCH_CHECK_VALUE(K1 > 0 && K2 > 0, "K1 and K2 must be > 0, got ", K1, " and ", K2);
  const int64_t H = x.size(2), W = x.size(3);
  TORCH_CHECK_VALUE(H >= win && W >= win, "win_size exceeds image extent: images must be at least ", win, " x ",
                    win, " (got ", H, " x ", W, "); use a smaller win_size");
  return {x.size(0), x.size(1), H, W, H - win + 1, W - win + 1};
}

std::vector<double> gaussian_window(int64_t win, double sigma) {
  std::vector<double> g(win);
  const int64_t r = win / 2;
  double sum = 0;
  for (int64_t k = 0; k < win; ++k) {
    const double d = double(k - r);
    g[k] = std::exp(-0.5 * d * d / (sigma * sigma));
    sum += g[k];
  }
  for (double& v : g) v /= sum;
  return g;
}

}  // namespace ssim
}  // namespace pyadv
