// groupnorm and rmsnorm (docs/ops.md, §5). Both reduce contiguous rows with one block per row in
// the §5.1 order -- fp64: the CPU reference's left-to-right order, one warp per row
// (kernels/row_reduce.cuh) --, as layernorm in batchnorm_layernorm.cu:
//   groupnorm: a row is one (sample, group) block of C/groups channels x S positions.
//              mean = sum(x) / n; var = sum((x - mean)^2) / n (two-pass, biased);
//              denom = sqrt(var + eps); y = (x - mean) / denom * w[c] + b[c].
//   rmsnorm:   ms = sum(x * x) / D; denom = sqrt(ms + eps); y = x / denom * w[i].
// Non-strict modes follow host/reference/norm.cpp's expressions (fp16/bf16 rounded once at the
// end; absent affine parameters skip their operation); strict uses strict_norm_denom,
// strict_norm_elem and strict_rms_elem with w = 1, b = 0 standing in for absent ones (§5.2), and
// s_sub/s_mul/s_div for the statistics, as the CPU strict path's plain float operators.
#include <algorithm>
#include <type_traits>

#include "host/strict_math.h"
#include "kernels/device.cuh"
#include "kernels/kernels.h"
#include "kernels/row_reduce.cuh"

namespace divscope {
namespace {

constexpr long long kMaxRowBlocks = 1 << 20;   // rows beyond this loop inside the block

// Row arithmetic of one mode: T = double (fp64) or float (the float modes, one RN rounding per
// operation since kernels are compiled with --fmad=false); strict spells every rounding.
template <class T>
struct PlainNorm {
  using Add = std::conditional_t<sizeof(T) == 8, F64Add, PlainAdd>;
  Mode m;
  __device__ T sub(T a, T b) const { return a - b; }
  __device__ T mul(T a, T b) const { return a * b; }
  __device__ T div(T a, T b) const { return a / b; }
  __device__ T denom(T var, T eps) const { return sqrt(var + eps); }
  __device__ T norm_elem(T x, T mean, T denom, const T* w, const T* b, int64_t c) const {
    T y = (x - mean) / denom;
    if (w) y = y * w[c];
    if (b) y = y + b[c];
    return store(y);
  }
  __device__ T rms_elem(T x, T denom, const T* w, int64_t i) const {
    T y = x / denom;
    if (w) y = y * w[i];
    return store(y);
  }
  __device__ T store(T y) const { return sizeof(T) == 4 ? T(round_storage(m, float(y))) : y; }
};

struct StrictNorm {
  using Add = StrictAdd;
  Mode m;
  __device__ float sub(float a, float b) const { return s_sub(a, b); }
  __device__ float mul(float a, float b) const { return s_mul(a, b); }
  __device__ float div(float a, float b) const { return s_div(a, b); }
  __device__ float denom(float var, float eps) const { return strict_norm_denom(var, eps); }
  __device__ float norm_elem(float x, float mean, float denom, const float* w, const float* b,
                             int64_t c) const {
    return strict_norm_elem(x, mean, denom, w ? w[c] : 1.0f, b ? b[c] : 0.0f);
  }
  __device__ float rms_elem(float x, float denom, const float* w, int64_t i) const {
    return strict_rms_elem(x, denom, w ? w[i] : 1.0f);
  }
};

// groupnorm: row r = (n, g) covers x[r * D, (r + 1) * D) with D = cg * S; element i of the row
// belongs to channel g * cg + i / S.
template <class T, class F, class Order>
__global__ void groupnorm_kernel(F f, const T* __restrict__ x, const T* __restrict__ w,
                                 const T* __restrict__ b, T eps, T* __restrict__ y, int64_t rows,
                                 int64_t groups, int64_t cg, int64_t S) {
  __shared__ T s[kRowBlock];
  const typename F::Add add;
  const int lane = static_cast<int>(threadIdx.x);
  const int64_t D = cg * S;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * D;
    T* yr = y + r * D;
    const int64_t c0 = (r % groups) * cg;
    const T mean = f.div(Order::reduce(D, T(0), add, [&](int64_t i) { return xr[i]; }, s), T(D));
    const T sq = Order::reduce(D, T(0), add, [&](int64_t i) {
                   const T d = f.sub(xr[i], mean);
                   return f.mul(d, d);
                 }, s);
    const T denom = f.denom(f.div(sq, T(D)), eps);
    for (int64_t i = lane; i < D; i += Order::kThreads)
      yr[i] = f.norm_elem(xr[i], mean, denom, w, b, c0 + i / S);
  }
}

template <class T, class F, class Order>
__global__ void rmsnorm_kernel(F f, const T* __restrict__ x, const T* __restrict__ w, T eps,
                               T* __restrict__ y, int64_t rows, int64_t D) {
  __shared__ T s[kRowBlock];
  const typename F::Add add;
  const int lane = static_cast<int>(threadIdx.x);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * D;
    T* yr = y + r * D;
    const T ms = Order::reduce(D, T(0), add, [&](int64_t i) { return f.mul(xr[i], xr[i]); }, s);
    const T denom = f.denom(f.div(ms, T(D)), eps);
    for (int64_t i = lane; i < D; i += Order::kThreads) yr[i] = f.rms_elem(xr[i], denom, w, i);
  }
}

int row_blocks(int64_t rows) { return static_cast<int>(std::min<long long>(rows, kMaxRowBlocks)); }

// fp64 reduces in the CPU's order, the other modes in the §5.1 tree (kernels/row_reduce.cuh).
template <class T>
using OrderOf = RowOrder<sizeof(T) == 8>;

template <class T, class F>
void launch_groupnorm(F f, int64_t N, int64_t C, int64_t S, int64_t groups, double eps,
                      const void* x, const void* w, const void* b, void* y,
                      const std::string& layer) {
  if (groups <= 0 || C % groups)
    throw RuntimeFault("groupnorm: num_groups does not divide channels (layer '" + layer + "')");
  const int64_t rows = N * groups, cg = C / groups;
  if (rows == 0 || cg * S == 0) return;
  groupnorm_kernel<T, F, OrderOf<T>><<<row_blocks(rows), OrderOf<T>::kThreads>>>(
      f, static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(b), T(eps),
      static_cast<T*>(y), rows, groups, cg, S);
  check_launch("groupnorm_kernel", layer);
}

template <class T, class F>
void launch_rmsnorm(F f, int64_t rows, int64_t D, double eps, const void* x, const void* w,
                    void* y, const std::string& layer) {
  if (rows == 0 || D == 0) return;
  rmsnorm_kernel<T, F, OrderOf<T>><<<row_blocks(rows), OrderOf<T>::kThreads>>>(
      f, static_cast<const T*>(x), static_cast<const T*>(w), T(eps), static_cast<T*>(y), rows, D);
  check_launch("rmsnorm_kernel", layer);
}

}  // namespace

void groupnorm(Mode mode, int64_t N, int64_t C, int64_t S, int64_t groups, double eps,
               const void* x, const void* weight, const void* bias, void* y,
               const std::string& layer) {
  if (mode == Mode::fp64)
    launch_groupnorm<double>(PlainNorm<double>{mode}, N, C, S, groups, eps, x, weight, bias, y, layer);
  else if (mode == Mode::strict)
    launch_groupnorm<float>(StrictNorm{mode}, N, C, S, groups, eps, x, weight, bias, y, layer);
  else
    launch_groupnorm<float>(PlainNorm<float>{mode}, N, C, S, groups, eps, x, weight, bias, y, layer);
}

void rmsnorm(Mode mode, int64_t rows, int64_t D, double eps, const void* x, const void* weight,
             void* y, const std::string& layer) {
  if (mode == Mode::fp64)
    launch_rmsnorm<double>(PlainNorm<double>{mode}, rows, D, eps, x, weight, y, layer);
  else if (mode == Mode::strict)
    launch_rmsnorm<float>(StrictNorm{mode}, rows, D, eps, x, weight, y, layer);
  else
    launch_rmsnorm<float>(PlainNorm<float>{mode}, rows, D, eps, x, weight, y, layer);
}

}  // namespace divscope
