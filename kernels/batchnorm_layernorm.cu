// Normalizations (docs/ops.md, §5): batchnorm2d (inference, running statistics) and layernorm.
// batchnorm is elementwise (one thread per element); layernorm reduces each row with one block
// in the §5.1 order -- fp64: the CPU reference's left-to-right order (kernels/row_reduce.cuh) --:
// mean = sum(x) / D, then the biased variance sum((x - mean)^2) / D (two-pass, as the CPU
// reference), denom = sqrt(var + eps).
// Per element: fp64/fp32/tf32/fp16/bf16 follow the CPU reference, y = (x - mean) / denom * w + b
// (fp16/bf16 rounded once at the end); strict uses strict_norm_elem, fma((x - mean) / denom, w, b)
// with w = 1, b = 0 standing in for absent affine parameters (docs/ops.md, Precision modes: strict formulas).
#include <algorithm>

#include "host/strict_math.h"
#include "kernels/device.cuh"
#include "kernels/kernels.h"
#include "kernels/row_reduce.cuh"

namespace divscope {
namespace {

constexpr int kBlock = 256;
constexpr long long kMaxBlocks = 8192;       // grid-stride cap, see relu_gelu_add.cu
constexpr long long kMaxRowBlocks = 1 << 20; // rows beyond this loop inside the block

template <class T>
__device__ T store(Mode m, T y) {
  return sizeof(T) == 4 ? T(round_storage(m, float(y))) : y;
}

// ---- batchnorm2d -------------------------------------------------------------------------------
template <class T>
__global__ void batchnorm_kernel(Mode m, const T* __restrict__ x, const T* __restrict__ w,
                                 const T* __restrict__ b, const T* __restrict__ mean,
                                 const T* __restrict__ var, T eps, T* __restrict__ y, int64_t n,
                                 int64_t C, int64_t S) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = (i / S) % C;
    if (m == Mode::strict) {
      const float denom = strict_norm_denom(float(var[c]), float(eps));
      y[i] = T(strict_norm_elem(float(x[i]), float(mean[c]), denom, float(w[c]), float(b[c])));
    } else {
      const T denom = sqrt(var[c] + eps);
      y[i] = store(m, (x[i] - mean[c]) / denom * w[c] + b[c]);
    }
  }
}

template <class T>
void launch_batchnorm(Mode m, int64_t N, int64_t C, int64_t S, double eps, const void* x,
                      const void* w, const void* b, const void* mean, const void* var, void* y,
                      const std::string& layer) {
  const int64_t n = N * C * S;
  if (n == 0) return;
  const int blocks = static_cast<int>(std::min<long long>(ceil_div(n, kBlock), kMaxBlocks));
  batchnorm_kernel<T><<<blocks, kBlock>>>(
      m, static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(b),
      static_cast<const T*>(mean), static_cast<const T*>(var), T(eps), static_cast<T*>(y), n, C, S);
  check_launch("batchnorm_kernel", layer);
}

// ---- layernorm ---------------------------------------------------------------------------------
// One block per row (grid-stride over rows), reducing in `Order` (kernels/row_reduce.cuh): the
// §5.1 tree for strict and the float modes, the CPU's left-to-right order for fp64. `Add` is the
// rounding of the sums (s_add for strict, d_add for fp64).
template <class T, class Add, bool kStrict, class Order>
__global__ void layernorm_kernel(Mode m, const T* __restrict__ x, const T* __restrict__ w,
                                 const T* __restrict__ b, T eps, T* __restrict__ y, int64_t rows,
                                 int64_t D) {
  __shared__ T s[kRowBlock];
  const Add add;
  const int lane = static_cast<int>(threadIdx.x);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * D;
    T* yr = y + r * D;
    const T mean = Order::reduce(D, T(0), add, [&](int64_t i) { return xr[i]; }, s) / T(D);
    // --fmad=false: each operation rounds once, as s_sub/s_mul and the CPU's operators
    const T var = Order::reduce(D, T(0), add, [&](int64_t i) {
                    const T d = xr[i] - mean;
                    return d * d;
                  }, s) / T(D);   // IEEE division (no fast math)
    if (kStrict) {
      const float denom = strict_norm_denom(float(var), float(eps));
      for (int64_t i = lane; i < D; i += Order::kThreads)
        yr[i] = strict_norm_elem(float(xr[i]), float(mean), denom, w ? float(w[i]) : 1.0f,
                                 b ? float(b[i]) : 0.0f);
    } else {
      const T denom = sqrt(var + eps);
      for (int64_t i = lane; i < D; i += Order::kThreads) {
        T v = (xr[i] - mean) / denom;
        if (w) v = v * w[i];
        if (b) v = v + b[i];
        yr[i] = store(m, v);
      }
    }
  }
}

template <class T, class Add, bool kStrict, class Order = RowOrder<false>>
void launch_layernorm(Mode m, int64_t rows, int64_t D, double eps, const void* x, const void* w,
                      const void* b, void* y, const std::string& layer) {
  if (rows == 0 || D == 0) return;
  const int blocks = static_cast<int>(std::min<long long>(rows, kMaxRowBlocks));
  layernorm_kernel<T, Add, kStrict, Order><<<blocks, Order::kThreads>>>(
      m, static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(b), T(eps),
      static_cast<T*>(y), rows, D);
  check_launch("layernorm_kernel", layer);
}

}  // namespace

void batchnorm2d(Mode mode, int64_t N, int64_t C, int64_t S, double eps, const void* x,
                 const void* weight, const void* bias, const void* mean, const void* var, void* y,
                 const std::string& layer) {
  if (mode == Mode::fp64)
    launch_batchnorm<double>(mode, N, C, S, eps, x, weight, bias, mean, var, y, layer);
  else
    launch_batchnorm<float>(mode, N, C, S, eps, x, weight, bias, mean, var, y, layer);
}

void layernorm(Mode mode, int64_t rows, int64_t D, double eps, const void* x, const void* weight,
               const void* bias, void* y, const std::string& layer) {
  if (mode == Mode::fp64)
    launch_layernorm<double, F64Add, false, RowOrder<true>>(mode, rows, D, eps, x, weight, bias,
                                                             y, layer);
  else if (mode == Mode::strict)
    launch_layernorm<float, StrictAdd, true>(mode, rows, D, eps, x, weight, bias, y, layer);
  else
    launch_layernorm<float, PlainAdd, false>(mode, rows, D, eps, x, weight, bias, y, layer);
}

}  // namespace divscope
