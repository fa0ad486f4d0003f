// Elementwise ops (docs/ops.md, §5): relu, gelu (erf and tanh forms), add with broadcasting.
// Each output is a function of its inputs only, so one thread per element, no ordering issues.
// fp64 computes in double; fp32/tf32/fp16/bf16 in float from storage-valued inputs, rounded once
// by round_storage; strict calls the strict_math.h formulas the CPU strict path calls.
#include <algorithm>

#include "host/strict_math.h"
#include "kernels/broadcast.cuh"
#include "kernels/device.cuh"
#include "kernels/kernels.h"

namespace divscope {
namespace {

using namespace broadcast_detail;

constexpr int kBlock = 256;
// Grid cap for the grid-stride loops: 132 SMs x 2048 threads / 256 = ~1056 resident blocks on an
// H100; 8192 keeps every SM busy with room to spare and launches cheaply for small tensors.
constexpr long long kMaxBlocks = 8192;

int grid_for(int64_t n) { return static_cast<int>(std::min<long long>(ceil_div(n, kBlock), kMaxBlocks)); }

// ---- per-element formulas ----------------------------------------------------------------------
// Non-strict float and double follow the CPU reference's expressions (host/reference/
// elementwise.cpp) term for term, so they differ from it only through erf/tanh's last bits.
__device__ double dev_erf(double x) { return erf(x); }
__device__ float dev_erf(float x) { return erff(x); }
__device__ double dev_tanh(double x) { return tanh(x); }
__device__ float dev_tanh(float x) { return tanhf(x); }

template <class T>
struct Relu {
  Mode m;
  __device__ T operator()(T x) const { return x < T(0) ? T(0) : x; }   // NaN stays NaN
};
template <class T>
struct GeluErf {
  Mode m;
  __device__ T operator()(T x) const {
    const T half(0.5), one(1), inv_sqrt2(0.70710678118654752440);
    T y = half * x * (one + dev_erf(x * inv_sqrt2));
    return sizeof(T) == 4 ? T(round_storage(m, float(y))) : y;
  }
};
template <class T>
struct GeluTanh {
  Mode m;
  __device__ T operator()(T x) const {
    const T half(0.5), one(1), k(0.79788456080286535588), c(0.044715);
    T y = half * x * (one + dev_tanh(k * (x + c * x * x * x)));
    return sizeof(T) == 4 ? T(round_storage(m, float(y))) : y;
  }
};
struct StrictRelu {
  __device__ float operator()(float x) const { return strict_relu(x); }
};
struct StrictGeluErf {
  __device__ float operator()(float x) const { return strict_gelu_erf(x); }
};
struct StrictGeluTanh {
  __device__ float operator()(float x) const { return strict_gelu_tanh(x); }
};

template <class T, class F>
__global__ void unary_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, F f) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = f(x[i]);
}

template <class T, class F>
void launch_unary(const void* x, void* y, int64_t n, F f, const std::string& layer) {
  if (n == 0) return;
  unary_kernel<<<grid_for(n), kBlock>>>(static_cast<const T*>(x), static_cast<T*>(y), n, f);
  check_launch("unary_kernel", layer);
}

// ---- add with broadcasting ---------------------------------------------------------------------
template <class T>
struct AddOp {
  Mode m;
  __device__ T operator()(T a, T b) const {
    if (sizeof(T) == 8) return a + b;
    if (m == Mode::strict) return T(s_add(float(a), float(b)));
    return T(round_storage(m, float(a) + float(b)));
  }
};

}  // namespace

void unary(Mode mode, UnaryOp op, const void* x, void* y, int64_t n, const std::string& layer) {
  if (mode == Mode::fp64) {
    switch (op) {
      case UnaryOp::relu: return launch_unary<double>(x, y, n, Relu<double>{mode}, layer);
      case UnaryOp::gelu_erf: return launch_unary<double>(x, y, n, GeluErf<double>{mode}, layer);
      case UnaryOp::gelu_tanh: return launch_unary<double>(x, y, n, GeluTanh<double>{mode}, layer);
    }
  } else if (mode == Mode::strict) {
    switch (op) {
      case UnaryOp::relu: return launch_unary<float>(x, y, n, StrictRelu{}, layer);
      case UnaryOp::gelu_erf: return launch_unary<float>(x, y, n, StrictGeluErf{}, layer);
      case UnaryOp::gelu_tanh: return launch_unary<float>(x, y, n, StrictGeluTanh{}, layer);
    }
  } else {
    switch (op) {
      case UnaryOp::relu: return launch_unary<float>(x, y, n, Relu<float>{mode}, layer);
      case UnaryOp::gelu_erf: return launch_unary<float>(x, y, n, GeluErf<float>{mode}, layer);
      case UnaryOp::gelu_tanh: return launch_unary<float>(x, y, n, GeluTanh<float>{mode}, layer);
    }
  }
  throw RuntimeFault("unary: unknown op (layer '" + layer + "')");
}

void add(Mode mode, const std::vector<int64_t>& a_shape, const std::vector<int64_t>& b_shape,
         const void* a, const void* b, void* y, const std::string& layer) {
  int64_t n = 0;
  const Broadcast bc = make_broadcast("add", a_shape, b_shape, n, layer);
  if (n == 0) return;
  if (mode == Mode::fp64)
    broadcast_kernel<<<grid_for(n), kBlock>>>(static_cast<const double*>(a),
                                              static_cast<const double*>(b),
                                              static_cast<double*>(y), n, bc, AddOp<double>{mode});
  else
    broadcast_kernel<<<grid_for(n), kBlock>>>(static_cast<const float*>(a),
                                              static_cast<const float*>(b),
                                              static_cast<float*>(y), n, bc, AddOp<float>{mode});
  check_launch("add_kernel", layer);
}

}  // namespace divscope
