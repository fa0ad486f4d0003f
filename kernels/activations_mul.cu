// Elementwise ops, second set (docs/ops.md, §5): leaky_relu, silu, sigmoid, tanh, and mul with
// add's broadcasting. One thread per element (grid-stride), as kernels/relu_gelu_add.cu.
// fp64 computes in double; fp32/tf32/fp16/bf16 in float from storage-valued inputs, rounded once
// by round_storage; strict calls the strict_math.h formulas the CPU strict path calls. Non-strict
// formulas are the CPU reference's (host/reference/elementwise.cpp) term for term:
//   sigmoid = 1 / (1 + exp(-x)), silu = x * sigmoid(x), leaky = x > 0 ? x : x * slope.
#include <algorithm>

#include "host/strict_math.h"
#include "kernels/broadcast.cuh"
#include "kernels/device.cuh"
#include "kernels/kernels.h"

namespace divscope {
namespace {

using namespace broadcast_detail;

constexpr int kBlock = 256;
constexpr long long kMaxBlocks = 8192;   // grid-stride cap, see relu_gelu_add.cu

int grid_for(int64_t n) { return static_cast<int>(std::min<long long>(ceil_div(n, kBlock), kMaxBlocks)); }

__device__ double dev_exp(double x) { return exp(x); }
__device__ float dev_exp(float x) { return expf(x); }
__device__ double dev_tanh(double x) { return tanh(x); }
__device__ float dev_tanh(float x) { return tanhf(x); }

template <class T>
__device__ T store(Mode m, T y) {
  return sizeof(T) == 4 ? T(round_storage(m, float(y))) : y;
}

template <class T>
__device__ T plain_sigmoid(T x) { return T(1) / (T(1) + dev_exp(-x)); }

// One functor per (op, arithmetic); `slope` is converted to T once on the host, as the CPU's
// Acc(negative_slope).
template <class T>
struct LeakyRelu {
  Mode m;
  T slope;
  __device__ T operator()(T x) const { return store(m, x > T(0) ? x : x * slope); }
};
template <class T>
struct Sigmoid {
  Mode m;
  __device__ T operator()(T x) const { return store(m, plain_sigmoid(x)); }
};
template <class T>
struct Silu {
  Mode m;
  __device__ T operator()(T x) const { return store(m, x * plain_sigmoid(x)); }
};
template <class T>
struct Tanh {
  Mode m;
  __device__ T operator()(T x) const { return store(m, dev_tanh(x)); }
};
struct StrictLeakyRelu {
  float slope;
  __device__ float operator()(float x) const { return strict_leaky_relu(x, slope); }
};
struct StrictSigmoid {
  __device__ float operator()(float x) const { return strict_sigmoid(x); }
};
struct StrictSilu {
  __device__ float operator()(float x) const { return strict_silu(x); }
};
struct StrictTanh {
  __device__ float operator()(float x) const { return strict_tanh(x); }
};

template <class T, class F>
__global__ void activation_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, F f) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = f(x[i]);
}

template <class T, class F>
void launch(const char* name, const void* x, void* y, int64_t n, F f, const std::string& layer) {
  if (n == 0) return;
  activation_kernel<<<grid_for(n), kBlock>>>(static_cast<const T*>(x), static_cast<T*>(y), n, f);
  check_launch(name, layer);
}

template <class T>
void plain_activation(Mode m, Activation op, double slope, const void* x, void* y, int64_t n,
                      const std::string& layer) {
  switch (op) {
    case Activation::leaky_relu:
      return launch<T>("leaky_relu_kernel", x, y, n, LeakyRelu<T>{m, T(slope)}, layer);
    case Activation::silu: return launch<T>("silu_kernel", x, y, n, Silu<T>{m}, layer);
    case Activation::sigmoid: return launch<T>("sigmoid_kernel", x, y, n, Sigmoid<T>{m}, layer);
    case Activation::tanh: return launch<T>("tanh_kernel", x, y, n, Tanh<T>{m}, layer);
  }
  throw RuntimeFault("activation: unknown op (layer '" + layer + "')");
}

// ---- mul with broadcasting (add()'s rules, kernels/broadcast.cuh) -----------------------------
template <class T>
struct MulOp {
  Mode m;
  __device__ T operator()(T a, T b) const {
    if (sizeof(T) == 8) return a * b;
    if (m == Mode::strict) return T(s_mul(float(a), float(b)));
    return T(round_storage(m, float(a) * float(b)));
  }
};

}  // namespace

void activation(Mode mode, Activation op, double slope, const void* x, void* y, int64_t n,
                const std::string& layer) {
  if (mode == Mode::fp64) return plain_activation<double>(mode, op, slope, x, y, n, layer);
  if (mode != Mode::strict) return plain_activation<float>(mode, op, slope, x, y, n, layer);
  switch (op) {
    case Activation::leaky_relu:
      return launch<float>("leaky_relu_kernel_strict", x, y, n,
                           StrictLeakyRelu{static_cast<float>(slope)}, layer);
    case Activation::silu: return launch<float>("silu_kernel_strict", x, y, n, StrictSilu{}, layer);
    case Activation::sigmoid:
      return launch<float>("sigmoid_kernel_strict", x, y, n, StrictSigmoid{}, layer);
    case Activation::tanh: return launch<float>("tanh_kernel_strict", x, y, n, StrictTanh{}, layer);
  }
  throw RuntimeFault("activation: unknown op (layer '" + layer + "')");
}

void mul(Mode mode, const std::vector<int64_t>& a_shape, const std::vector<int64_t>& b_shape,
         const void* a, const void* b, void* y, const std::string& layer) {
  int64_t n = 0;
  const Broadcast bc = make_broadcast("mul", a_shape, b_shape, n, layer);
  if (n == 0) return;
  if (mode == Mode::fp64)
    broadcast_kernel<<<grid_for(n), kBlock>>>(static_cast<const double*>(a),
                                              static_cast<const double*>(b),
                                              static_cast<double*>(y), n, bc, MulOp<double>{mode});
  else
    broadcast_kernel<<<grid_for(n), kBlock>>>(static_cast<const float*>(a),
                                              static_cast<const float*>(b),
                                              static_cast<float*>(y), n, bc, MulOp<float>{mode});
  check_launch("mul_kernel", layer);
}

}  // namespace divscope
