// Binary ops of model format v2 (contract: sub, div, pow, maximum, minimum) with add()'s
// broadcasting, and where(cond, a, b) with the three shapes broadcast together (kernels/
// broadcast.cuh). A constant input has batch dim 1 and repeats over the batch like any other
// size-1 dim. One thread per output element (grid-stride).
// fp64 computes in double; fp32/tf32/fp16/bf16 in float from storage-valued inputs, rounded once
// by round_storage; strict calls s_sub/s_div and the strict_math.h formulas strict_pow,
// strict_maximum, strict_minimum, as the CPU strict path does. maximum/minimum let NaN win
// (torch.maximum); pow is pow/powf (the CPU's std::pow of the same type). where copies a stored
// value and is exact in every mode.
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

__device__ double dev_pow(double a, double b) { return pow(a, b); }
__device__ float dev_pow(float a, float b) { return powf(a, b); }

// NaN wins (a's first); otherwise the larger (smaller) value, a on a tie (-0 vs +0): the
// selection of strict_maximum/strict_minimum.
template <class T>
__device__ T nan_max(T a, T b) { return a != a ? a : (b != b ? b : (a < b ? b : a)); }
template <class T>
__device__ T nan_min(T a, T b) { return a != a ? a : (b != b ? b : (b < a ? b : a)); }

template <class T, BinaryOp kOp>
struct PlainBinary {
  Mode m;
  __device__ T operator()(T a, T b) const {
    T y = a;
    switch (kOp) {
      case BinaryOp::sub: y = a - b; break;
      case BinaryOp::div: y = a / b; break;
      case BinaryOp::pow: y = dev_pow(a, b); break;
      case BinaryOp::maximum: y = nan_max(a, b); break;
      case BinaryOp::minimum: y = nan_min(a, b); break;
    }
    return sizeof(T) == 4 ? T(round_storage(m, float(y))) : y;
  }
};

template <BinaryOp kOp>
struct StrictBinary {
  __device__ float operator()(float a, float b) const {
    switch (kOp) {
      case BinaryOp::sub: return s_sub(a, b);
      case BinaryOp::div: return s_div(a, b);
      case BinaryOp::pow: return strict_pow(a, b);
      case BinaryOp::maximum: return strict_maximum(a, b);
      case BinaryOp::minimum: return strict_minimum(a, b);
    }
    return a;
  }
};

const char* kernel_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::sub: return "sub_kernel";
    case BinaryOp::div: return "div_kernel";
    case BinaryOp::pow: return "pow_kernel";
    case BinaryOp::maximum: return "maximum_kernel";
    case BinaryOp::minimum: return "minimum_kernel";
  }
  return "binary_kernel";
}

template <BinaryOp kOp>
void launch_binary(Mode m, const Broadcast& bc, int64_t n, const void* a, const void* b, void* y,
                   const std::string& layer) {
  const int blocks = grid_for(n);
  const auto* af = static_cast<const float*>(a);
  const auto* bf = static_cast<const float*>(b);
  auto* yf = static_cast<float*>(y);
  if (m == Mode::fp64)
    broadcast_kernel<<<blocks, kBlock>>>(static_cast<const double*>(a),
                                         static_cast<const double*>(b), static_cast<double*>(y),
                                         n, bc, PlainBinary<double, kOp>{m});
  else if (m == Mode::strict)
    broadcast_kernel<<<blocks, kBlock>>>(af, bf, yf, n, bc, StrictBinary<kOp>{});
  else
    broadcast_kernel<<<blocks, kBlock>>>(af, bf, yf, n, bc, PlainBinary<float, kOp>{m});
  check_launch(kernel_name(kOp), layer);
}

// ---- where -------------------------------------------------------------------------------------
template <class T>
__global__ void where_kernel(const T* __restrict__ c, const T* __restrict__ a,
                             const T* __restrict__ b, T* __restrict__ y, int64_t n,
                             GatherMap<3> g) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[3];
    gather_offsets(g, i, off);
    y[i] = c[off[0]] != T(0) ? a[off[1]] : b[off[2]];
  }
}

}  // namespace

void binary(Mode mode, BinaryOp op, const std::vector<int64_t>& a_shape,
            const std::vector<int64_t>& b_shape, const void* a, const void* b, void* y,
            const std::string& layer) {
  int64_t n = 0;
  const Broadcast bc = make_broadcast(kernel_name(op), a_shape, b_shape, n, layer);
  if (n == 0) return;
  switch (op) {
    case BinaryOp::sub: return launch_binary<BinaryOp::sub>(mode, bc, n, a, b, y, layer);
    case BinaryOp::div: return launch_binary<BinaryOp::div>(mode, bc, n, a, b, y, layer);
    case BinaryOp::pow: return launch_binary<BinaryOp::pow>(mode, bc, n, a, b, y, layer);
    case BinaryOp::maximum: return launch_binary<BinaryOp::maximum>(mode, bc, n, a, b, y, layer);
    case BinaryOp::minimum: return launch_binary<BinaryOp::minimum>(mode, bc, n, a, b, y, layer);
  }
  throw RuntimeFault("binary: unknown op (layer '" + layer + "')");
}

void where(Mode mode, const std::vector<int64_t>& cond_shape, const std::vector<int64_t>& a_shape,
           const std::vector<int64_t>& b_shape, const void* cond, const void* a, const void* b,
           void* y, const std::string& layer) {
  if (cond_shape.size() != a_shape.size() || a_shape.size() != b_shape.size())
    throw RuntimeFault("where: inputs of different ranks (layer '" + layer + "')");
  std::vector<int64_t> out(a_shape.size());
  for (size_t d = 0; d < out.size(); ++d)
    out[d] = std::max({cond_shape[d], a_shape[d], b_shape[d]});
  const std::vector<int64_t>* const shapes[3] = {&cond_shape, &a_shape, &b_shape};
  int64_t n = 0;
  const GatherMap<3> g = make_gather_map<3>("where", out, shapes, n, layer);
  if (n == 0) return;
  if (mode == Mode::fp64)
    where_kernel<<<grid_for(n), kBlock>>>(static_cast<const double*>(cond),
                                          static_cast<const double*>(a),
                                          static_cast<const double*>(b), static_cast<double*>(y),
                                          n, g);
  else
    where_kernel<<<grid_for(n), kBlock>>>(static_cast<const float*>(cond),
                                          static_cast<const float*>(a),
                                          static_cast<const float*>(b), static_cast<float*>(y), n,
                                          g);
  check_launch("where_kernel", layer);
}

}  // namespace divscope
