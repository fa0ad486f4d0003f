// softmax and log_softmax along one axis (docs/ops.md, §5). x is viewed as [outer, n, inner]; each
// of the outer * inner lines (n elements at stride inner) is one block that reduces in the §5.1
// order -- fp64: the CPU reference's left-to-right order, one warp per line -- (kernels/row_reduce.cuh):
//   m = max x (NaN wins); s = sum exp(x - m); softmax y = exp(x - m) / s; log y = (x - m) - log s.
// fp64 in double, fp32/tf32/fp16/bf16 in float (fp16/bf16 rounded once at the end), strict with
// the strict_math.h pieces (strict_max_step/finish, strict_softmax_exp, strict_log, ...).
#include <algorithm>
#include <type_traits>

#include "host/strict_math.h"
#include "kernels/device.cuh"
#include "kernels/kernels.h"
#include "kernels/row_reduce.cuh"

namespace divscope {
namespace {

constexpr long long kMaxLineBlocks = 1 << 20;   // lines beyond this loop inside the block

__device__ double dev_exp(double x) { return exp(x); }
__device__ float dev_exp(float x) { return expf(x); }
__device__ double dev_log(double x) { return log(x); }
__device__ float dev_log(float x) { return logf(x); }

// Non-strict modes: the CPU reference's expressions in T.
template <class T>
struct PlainSoftmax {
  using Add = std::conditional_t<sizeof(T) == 8, F64Add, PlainAdd>;
  using Max = NanMax;
  Mode m;
  __device__ T finish_max(T v) const { return v; }
  __device__ T exp_of(T x, T mx) const { return dev_exp(x - mx); }
  __device__ T log_of(T s) const { return dev_log(s); }
  __device__ T elem(T e, T s) const { return store(e / s); }
  __device__ T log_elem(T x, T mx, T ls) const { return store(x - mx - ls); }
  __device__ T store(T y) const { return sizeof(T) == 4 ? T(round_storage(m, float(y))) : y; }
};

struct StrictSoftmax {
  using Add = StrictAdd;
  using Max = StrictMax;
  Mode m;
  __device__ float finish_max(float v) const { return strict_max_finish(v); }
  __device__ float exp_of(float x, float mx) const { return strict_softmax_exp(x, mx); }
  __device__ float log_of(float s) const { return strict_log(s); }
  __device__ float elem(float e, float s) const { return strict_softmax_elem(e, s); }
  __device__ float log_elem(float x, float mx, float ls) const {
    return strict_log_softmax_elem(x, mx, ls);
  }
};

template <class T, class F, bool kLog, class Order>
__global__ void softmax_kernel(F f, const T* __restrict__ x, T* __restrict__ y, int64_t lines,
                               int64_t n, int64_t inner) {
  __shared__ T s[kRowBlock];
  const typename F::Add add;
  const typename F::Max max_step;
  const int lane = static_cast<int>(threadIdx.x);
  const T neg_inf = -T(INFINITY);
  for (int64_t line = blockIdx.x; line < lines; line += gridDim.x) {
    const int64_t base = (line / inner) * n * inner + line % inner;
    const T* xl = x + base;
    T* yl = y + base;
    const T mx = f.finish_max(
        Order::reduce(n, neg_inf, max_step, [&](int64_t i) { return xl[i * inner]; }, s));
    const T sum =
        Order::reduce(n, T(0), add, [&](int64_t i) { return f.exp_of(xl[i * inner], mx); }, s);
    if (kLog) {
      const T ls = f.log_of(sum);
      for (int64_t i = lane; i < n; i += Order::kThreads)
        yl[i * inner] = f.log_elem(xl[i * inner], mx, ls);
    } else {
      for (int64_t i = lane; i < n; i += Order::kThreads)
        yl[i * inner] = f.elem(f.exp_of(xl[i * inner], mx), sum);
    }
  }
}

// fp64 in the CPU reference's order (one warp per line), the other modes in the §5.1 tree.
template <class T, class F, class Order = RowOrder<sizeof(T) == 8>>
void launch_softmax(F f, int64_t outer, int64_t n, int64_t inner, bool log, const void* x,
                    void* y, const std::string& layer) {
  const int64_t lines = outer * inner;
  if (lines == 0 || n == 0) return;
  const int blocks = static_cast<int>(std::min<long long>(lines, kMaxLineBlocks));
  const T* xt = static_cast<const T*>(x);
  T* yt = static_cast<T*>(y);
  if (log)
    softmax_kernel<T, F, true, Order><<<blocks, Order::kThreads>>>(f, xt, yt, lines, n, inner);
  else
    softmax_kernel<T, F, false, Order><<<blocks, Order::kThreads>>>(f, xt, yt, lines, n, inner);
  check_launch(log ? "log_softmax_kernel" : "softmax_kernel", layer);
}

}  // namespace

void softmax(Mode mode, int64_t outer, int64_t n, int64_t inner, bool log, const void* x, void* y,
             const std::string& layer) {
  if (mode == Mode::fp64)
    launch_softmax<double>(PlainSoftmax<double>{mode}, outer, n, inner, log, x, y, layer);
  else if (mode == Mode::strict)
    launch_softmax<float>(StrictSoftmax{mode}, outer, n, inner, log, x, y, layer);
  else
    launch_softmax<float>(PlainSoftmax<float>{mode}, outer, n, inner, log, x, y, layer);
}

}  // namespace divscope
