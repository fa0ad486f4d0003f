// Unary math ops of model format v2 (contract: hardtanh, hardswish, hardsigmoid, sqrt, rsqrt, exp,
// log, abs, neg, erf). One thread per element (grid-stride), as kernels/activations_mul.cu.
// fp64 computes in double; fp32/tf32/fp16/bf16 in float from storage-valued inputs, rounded once
// by round_storage; strict calls the strict_math.h formulas the CPU strict path calls.
// Non-strict formulas are the contract's expressions left to right:
//   hardtanh = x < lo ? lo : x > hi ? hi : x             (comparisons: NaN stays NaN)
//   hardsigmoid = clamp(x + 3, 0, 6) / 6, hardswish = x * clamp(x + 3, 0, 6) / 6
//   rsqrt = 1 / sqrt(x)  (IEEE division of the IEEE square root; rsqrtf is approximate)
//   neg flips the sign bit, abs clears it (exact; -0 and NaN keep their meaning).
#include <algorithm>

#include "host/strict_math.h"
#include "kernels/device.cuh"
#include "kernels/kernels.h"

namespace divscope {
namespace {

constexpr int kBlock = 256;
constexpr long long kMaxBlocks = 8192;   // grid-stride cap, see relu_gelu_add.cu

int grid_for(int64_t n) { return static_cast<int>(std::min<long long>(ceil_div(n, kBlock), kMaxBlocks)); }

__device__ double dev_sqrt(double x) { return __dsqrt_rn(x); }
__device__ float dev_sqrt(float x) { return __fsqrt_rn(x); }
__device__ double dev_exp(double x) { return exp(x); }
__device__ float dev_exp(float x) { return expf(x); }
__device__ double dev_log(double x) { return log(x); }
__device__ float dev_log(float x) { return logf(x); }
__device__ double dev_erf(double x) { return erf(x); }
__device__ float dev_erf(float x) { return erff(x); }
__device__ double dev_abs(double x) { return bits_f64(f64_bits(x) & 0x7fffffffffffffffull); }
__device__ float dev_abs(float x) { return bits_f32(f32_bits(x) & 0x7fffffffu); }
__device__ double dev_neg(double x) { return bits_f64(f64_bits(x) ^ 0x8000000000000000ull); }
__device__ float dev_neg(float x) { return bits_f32(f32_bits(x) ^ 0x80000000u); }

template <class T>
__device__ T clamp_keep_nan(T v, T lo, T hi) { return v < lo ? lo : (v > hi ? hi : v); }

// One functor per arithmetic; the op is a kernel template argument so that each op compiles to
// its own straight-line kernel.
template <class T, MathOp kOp>
struct PlainMath {
  Mode m;
  T lo, hi;   // hardtanh's bounds, converted once on the host
  __device__ T operator()(T x) const {
    T y = x;
    switch (kOp) {
      case MathOp::hardtanh: y = clamp_keep_nan(x, lo, hi); break;
      case MathOp::hardswish: y = x * clamp_keep_nan(x + T(3), T(0), T(6)) / T(6); break;
      case MathOp::hardsigmoid: y = clamp_keep_nan(x + T(3), T(0), T(6)) / T(6); break;
      case MathOp::sqrt: y = dev_sqrt(x); break;
      case MathOp::rsqrt: y = T(1) / dev_sqrt(x); break;
      case MathOp::exp: y = dev_exp(x); break;
      case MathOp::log: y = dev_log(x); break;
      case MathOp::abs: y = dev_abs(x); break;
      case MathOp::neg: y = dev_neg(x); break;
      case MathOp::erf: y = dev_erf(x); break;
    }
    return sizeof(T) == 4 ? T(round_storage(m, float(y))) : y;
  }
};

template <MathOp kOp>
struct StrictMath {
  float lo, hi;
  __device__ float operator()(float x) const {
    switch (kOp) {
      case MathOp::hardtanh: return strict_hardtanh(x, lo, hi);
      case MathOp::hardswish: return strict_hardswish(x);
      case MathOp::hardsigmoid: return strict_hardsigmoid(x);
      case MathOp::sqrt: return s_sqrt(x);
      case MathOp::rsqrt: return strict_rsqrt(x);
      case MathOp::exp: return strict_exp(x);
      case MathOp::log: return strict_log(x);
      case MathOp::abs: return s_abs(x);
      case MathOp::neg: return s_neg(x);
      case MathOp::erf: return strict_erf(x);
    }
    return x;
  }
};

template <class T, class F>
__global__ void unary_math_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, F f) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = f(x[i]);
}

const char* kernel_name(MathOp op) {
  switch (op) {
    case MathOp::hardtanh: return "hardtanh_kernel";
    case MathOp::hardswish: return "hardswish_kernel";
    case MathOp::hardsigmoid: return "hardsigmoid_kernel";
    case MathOp::sqrt: return "sqrt_kernel";
    case MathOp::rsqrt: return "rsqrt_kernel";
    case MathOp::exp: return "exp_kernel";
    case MathOp::log: return "log_kernel";
    case MathOp::abs: return "abs_kernel";
    case MathOp::neg: return "neg_kernel";
    case MathOp::erf: return "erf_kernel";
  }
  return "unary_math_kernel";
}

// The functor of (mode, op): double for fp64, the strict formulas for strict, float otherwise.
template <MathOp kOp>
void launch_op(Mode m, double lo, double hi, const void* x, void* y, int64_t n,
               const std::string& layer) {
  const int blocks = grid_for(n);
  if (m == Mode::fp64)
    unary_math_kernel<<<blocks, kBlock>>>(static_cast<const double*>(x), static_cast<double*>(y),
                                          n, PlainMath<double, kOp>{m, lo, hi});
  else if (m == Mode::strict)
    unary_math_kernel<<<blocks, kBlock>>>(static_cast<const float*>(x), static_cast<float*>(y), n,
                                          StrictMath<kOp>{static_cast<float>(lo),
                                                          static_cast<float>(hi)});
  else
    unary_math_kernel<<<blocks, kBlock>>>(static_cast<const float*>(x), static_cast<float*>(y), n,
                                          PlainMath<float, kOp>{m, static_cast<float>(lo),
                                                                static_cast<float>(hi)});
  check_launch(kernel_name(kOp), layer);
}

}  // namespace

void unary_math(Mode mode, MathOp op, double lo, double hi, const void* x, void* y, int64_t n,
                const std::string& layer) {
  if (n == 0) return;
  if (op == MathOp::hardtanh && !(lo <= hi))
    throw RuntimeFault("hardtanh: min_val > max_val (layer '" + layer + "')");
  switch (op) {
    case MathOp::hardtanh: return launch_op<MathOp::hardtanh>(mode, lo, hi, x, y, n, layer);
    case MathOp::hardswish: return launch_op<MathOp::hardswish>(mode, lo, hi, x, y, n, layer);
    case MathOp::hardsigmoid: return launch_op<MathOp::hardsigmoid>(mode, lo, hi, x, y, n, layer);
    case MathOp::sqrt: return launch_op<MathOp::sqrt>(mode, lo, hi, x, y, n, layer);
    case MathOp::rsqrt: return launch_op<MathOp::rsqrt>(mode, lo, hi, x, y, n, layer);
    case MathOp::exp: return launch_op<MathOp::exp>(mode, lo, hi, x, y, n, layer);
    case MathOp::log: return launch_op<MathOp::log>(mode, lo, hi, x, y, n, layer);
    case MathOp::abs: return launch_op<MathOp::abs>(mode, lo, hi, x, y, n, layer);
    case MathOp::neg: return launch_op<MathOp::neg>(mode, lo, hi, x, y, n, layer);
    case MathOp::erf: return launch_op<MathOp::erf>(mode, lo, hi, x, y, n, layer);
  }
  throw RuntimeFault("unary_math: unknown op (layer '" + layer + "')");
}

}  // namespace divscope
