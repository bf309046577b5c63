// Swarm CUDA kernels. Element-wise updates use one thread per coordinate; swarm_best uses one
// block per problem with a shared-memory (value, index) reduction whose ties go to the lowest
// index; the renderers use one block per output image (copy, barrier, then the edits).
// Built with --fmad=false (CMakeLists.txt) so the numbers match the CPU kernels bit for bit.
#include "../common/cuda_compat.h"
#include "swarm_gpu.h"
#include "swarm_math.h"

namespace pyadv {
namespace PYADV_GPU_NS {
namespace swarm {

namespace sm = ::pyadv::swarm;
constexpr unsigned kThreads = 256;
constexpr unsigned kBestThreads = 128;

#define PYADV_GRID_STRIDE(i, n) \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += int64_t(blockDim.x) * gridDim.x)

template <typename T>
__global__ void pso_step_kernel(T* pos, T* vel, const T* pbest, const T* gbest, const T* lo, const T* hi,
                                const int64_t* ids, int64_t B, int64_t N, int64_t D, T w, T c1, T c2, uint64_t seed,
                                uint32_t step, int boundary, T vmax_frac) {
  PYADV_GRID_STRIDE(e, B * N * D) {
    const int64_t b = e / (N * D), d = e % D;
    const int64_t stream_e = (ids ? ids[b] : b) * N * D + (e - b * N * D);
    T r1, r2;
    sm::pso_uniforms<T>(seed, step, static_cast<uint64_t>(stream_e), &r1, &r2);
    sm::pso_coord(pos[e], vel[e], pbest[e], gbest[b * D + d], lo[b * D + d], hi[b * D + d], w, c1, c2, r1, r2,
                  boundary, vmax_frac);
  }
}

template <typename T>
__global__ void swarm_best_kernel(const T* pos, const T* fit, T* pbest, T* pbest_fit, T* gbest, T* gbest_fit,
                                  int64_t B, int64_t N, int64_t D) {
  __shared__ T s_val[kBestThreads];
  __shared__ int64_t s_idx[kBestThreads];
  for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
    T best = T(1) / T(0);
    int64_t arg = -1;
    for (int64_t n = threadIdx.x; n < N; n += blockDim.x) {
      const int64_t row = b * N + n;
      const T f = sm::sane_fitness(fit[row]);
      if (f < pbest_fit[row]) {
        pbest_fit[row] = f;
        for (int64_t d = 0; d < D; ++d) pbest[row * D + d] = pos[row * D + d];
      }
      if (pbest_fit[row] < best) {
        best = pbest_fit[row];
        arg = n;
      }
    }
    s_val[threadIdx.x] = best;
    s_idx[threadIdx.x] = arg;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
      if (threadIdx.x < s) {
        const T ov = s_val[threadIdx.x + s];
        const int64_t oi = s_idx[threadIdx.x + s];
        const bool better = oi >= 0 && (s_idx[threadIdx.x] < 0 || ov < s_val[threadIdx.x] ||
                                        (ov == s_val[threadIdx.x] && oi < s_idx[threadIdx.x]));
        if (better) {
          s_val[threadIdx.x] = ov;
          s_idx[threadIdx.x] = oi;
        }
      }
      __syncthreads();
    }
    const int64_t win = s_idx[0];
    const bool update = win >= 0 && s_val[0] < gbest_fit[b];
    __syncthreads();  // every thread has read gbest_fit[b] before thread 0 changes it
    if (update) {
      for (int64_t d = threadIdx.x; d < D; d += blockDim.x) gbest[b * D + d] = pbest[(b * N + win) * D + d];
      if (threadIdx.x == 0) gbest_fit[b] = s_val[0];
    }
    __syncthreads();  // s_val / s_idx are reused by the next problem
  }
}

template <typename T>
__global__ void de_trial_kernel(const T* pop, const int64_t* best, const T* lo, const T* hi, const uint8_t* int_mask,
                                const int64_t* ids, T* trial, int64_t B, int64_t N, int64_t D, T F, T CR,
                                int strategy, int bounds, uint64_t seed, uint32_t step) {
  PYADV_GRID_STRIDE(e, B * N * D) {
    const int64_t row = e / D, d = e % D, b = row / N, i = row % N;
    const int64_t stream_row = (ids ? ids[b] : b) * N + i;
    const sm::DeIndices r = sm::de_indices(seed, step, static_cast<uint64_t>(stream_row), static_cast<uint32_t>(i),
                                           static_cast<uint32_t>(N), static_cast<uint32_t>(D));
    const T* x = pop + b * N * D;
    const int64_t a = strategy == sm::kBest1 ? best[b] : int64_t(r.r1);
    const int64_t p = strategy == sm::kBest1 ? int64_t(r.r1) : int64_t(r.r2);
    const int64_t q = strategy == sm::kBest1 ? int64_t(r.r2) : int64_t(r.r3);
    const bool take = CR >= T(1) || d == int64_t(r.jrand) ||
                      sm::de_cross_uniform<T>(seed, step, static_cast<uint64_t>(stream_row * D + d)) < CR;
    const T t = take ? x[a * D + d] + F * (x[p * D + d] - x[q * D + d]) : x[i * D + d];
    trial[e] = sm::de_bound(t, lo[b * D + d], hi[b * D + d], int_mask && int_mask[b * D + d], bounds, seed, step,
                            static_cast<uint64_t>(stream_row * D + d));
  }
}

template <typename T>
__global__ void de_select_kernel(const T* trial, const T* trial_fit, T* pop, T* fit, int64_t rows, int64_t D) {
  PYADV_GRID_STRIDE(row, rows) {
    const T f = sm::sane_fitness(trial_fit[row]);
    if (f <= fit[row]) {
      fit[row] = f;
      for (int64_t d = 0; d < D; ++d) pop[row * D + d] = trial[row * D + d];
    }
  }
}

template <typename T>
__global__ void sparse_perturb_kernel(const T* base, const int64_t* idx, const T* values, T* out, int64_t rows,
                                      int64_t N, int64_t m, int64_t P, int64_t n0, int64_t per) {
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t b = row / per, n = n0 + row % per;
    T* o = out + row * P;
    for (int64_t p = threadIdx.x; p < P; p += blockDim.x) o[p] = base[b * P + p];
    __syncthreads();
    // Deterministic with repeated indices (no atomics): the first slot naming a pixel adds every
    // value aimed at it in slot order, as the CPU kernel does, and clamps once.
    const int64_t* ib = idx + b * m;
    const T* vb = values + (b * N + n) * m;
    for (int64_t j = threadIdx.x; j < m; j += blockDim.x) {
      const int64_t p = ib[j];
      bool first = true;
      for (int64_t k = 0; k < j && first; ++k) first = ib[k] != p;
      if (!first) continue;
      T t = base[b * P + p];
      for (int64_t k = j; k < m; ++k)
        if (ib[k] == p) t += vb[k];
      o[p] = t < T(0) ? T(0) : (t > T(1) ? T(1) : t);
    }
    __syncthreads();
  }
}

template <typename T>
__global__ void pixel_replace_kernel(const T* base, const T* cand, T* out, int64_t rows, int64_t N, int64_t m,
                                     int64_t C, int64_t H, int64_t W, int64_t n0, int64_t per) {
  const int64_t P = C * H * W, S = 2 + C;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t b = row / per, n = n0 + row % per;
    T* o = out + row * P;
    for (int64_t p = threadIdx.x; p < P; p += blockDim.x) o[p] = base[b * P + p];
    __syncthreads();
    if (threadIdx.x == 0) {  // in order, so a later candidate pixel wins, as on the CPU
      const T* c = cand + (b * N + n) * m * S;
      for (int64_t j = 0; j < m; ++j, c += S) {
        int64_t y = static_cast<int64_t>(sm::round_half_up(c[0])), x = static_cast<int64_t>(sm::round_half_up(c[1]));
        y = y < 0 ? 0 : (y >= H ? H - 1 : y);
        x = x < 0 ? 0 : (x >= W ? W - 1 : x);
        for (int64_t ch = 0; ch < C; ++ch) {
          const T v = c[2 + ch];
          o[(ch * H + y) * W + x] = v < T(0) ? T(0) : (v > T(1) ? T(1) : v);
        }
      }
    }
    __syncthreads();
  }
}

template <typename T>
int pso_step(T* pos, T* vel, const T* pbest, const T* gbest, const T* lo, const T* hi, const int64_t* ids, int64_t B,
             int64_t N, int64_t D, T w, T c1, T c2, uint64_t seed, uint32_t step, int boundary, T vmax_frac,
             void* stream) {
  if (B * N * D == 0) return 0;
  return launch_kernel(pso_step_kernel<T>, grid_for(B * N * D, kThreads), kThreads, 0, stream, pos, vel, pbest, gbest,
                       lo, hi, ids, B, N, D, w, c1, c2, seed, step, boundary, vmax_frac);
}

template <typename T>
int swarm_best(const T* pos, const T* fit, T* pbest, T* pbest_fit, T* gbest, T* gbest_fit, int64_t B, int64_t N,
               int64_t D, void* stream) {
  if (B * N == 0) return 0;
  const unsigned blocks = loop_blocks(B);
  return launch_kernel(swarm_best_kernel<T>, blocks, kBestThreads, 0, stream, pos, fit, pbest, pbest_fit, gbest,
                       gbest_fit, B, N, D);
}

template <typename T>
int de_trial(const T* pop, const int64_t* best, const T* lo, const T* hi, const uint8_t* int_mask, const int64_t* ids,
             T* trial, int64_t B, int64_t N, int64_t D, T F, T CR, int strategy, int bounds, uint64_t seed,
             uint32_t step, void* stream) {
  if (B * N * D == 0) return 0;
  return launch_kernel(de_trial_kernel<T>, grid_for(B * N * D, kThreads), kThreads, 0, stream, pop, best, lo, hi,
                       int_mask, ids, trial, B, N, D, F, CR, strategy, bounds, seed, step);
}

template <typename T>
int de_select(const T* trial, const T* trial_fit, T* pop, T* fit, int64_t B, int64_t N, int64_t D, void* stream) {
  if (B * N == 0) return 0;
  return launch_kernel(de_select_kernel<T>, grid_for(B * N, kThreads), kThreads, 0, stream, trial, trial_fit, pop,
                       fit, B * N, D);
}

template <typename T>
int sparse_perturb(const T* base, const int64_t* idx, const T* values, T* out, int64_t B, int64_t N, int64_t m,
                   int64_t P, int64_t n0, int64_t n1, void* stream) {
  const int64_t rows = B * (n1 - n0);
  if (rows == 0 || P == 0) return 0;
  return launch_kernel(sparse_perturb_kernel<T>, loop_blocks(rows), kThreads, 0,
                       stream, base, idx, values, out, rows, N, m, P, n0, n1 - n0);
}

template <typename T>
int pixel_replace(const T* base, const T* cand, T* out, int64_t B, int64_t N, int64_t m, int64_t C, int64_t H,
                  int64_t W, int64_t n0, int64_t n1, void* stream) {
  const int64_t rows = B * (n1 - n0);
  if (rows == 0 || C * H * W == 0) return 0;
  return launch_kernel(pixel_replace_kernel<T>, loop_blocks(rows), kThreads, 0,
                       stream, base, cand, out, rows, N, m, C, H, W, n0, n1 - n0);
}

#define PYADV_INSTANTIATE(T)                                                                                        \
  template int pso_step<T>(T*, T*, const T*, const T*, const T*, const T*, const int64_t*, int64_t, int64_t,       \
                           int64_t, T, T, T, uint64_t, uint32_t, int, T, void*);                                    \
  template int swarm_best<T>(const T*, const T*, T*, T*, T*, T*, int64_t, int64_t, int64_t, void*);                 \
  template int de_trial<T>(const T*, const int64_t*, const T*, const T*, const uint8_t*, const int64_t*, T*,        \
                           int64_t, int64_t, int64_t, T, T, int, int, uint64_t, uint32_t, void*);                   \
  template int de_select<T>(const T*, const T*, T*, T*, int64_t, int64_t, int64_t, void*);                          \
  template int sparse_perturb<T>(const T*, const int64_t*, const T*, T*, int64_t, int64_t, int64_t, int64_t,        \
                                 int64_t, int64_t, void*);                                                          \
  template int pixel_replace<T>(const T*, const T*, T*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,       \
                                int64_t, int64_t, void*);
PYADV_INSTANTIATE(float)
PYADV_INSTANTIATE(double)
#undef PYADV_INSTANTIATE

}  // namespace swarm
}  // namespace PYADV_GPU_NS
}  // namespace pyadv
