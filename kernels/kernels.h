// Plain C++ API of the CUDA kernels (README, Building): no CUDA types in this header, so host code
// compiled by g++ calls it directly. All tensor pointers are DEVICE pointers. Mode::fp64 works
// on double*, every other mode on float* holding values representable in the mode's storage
// format (fp16/bf16 values are kept in float). Every function checks every CUDA call and every
// launch; errors throw RuntimeFault naming the kernel and `layer`.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "host/analysis/compare.h"   // LayerStats, CompareOptions (plain C++) for compare_device
#include "host/backends/caching_pool.h"   // CachingPool::Stats (plain C++)
#include "host/precision.h"

namespace divscope {

// One visible GPU as the CUDA runtime describes it (clocks in MHz; ECC and MIG as reported).
struct GpuInfo {
  std::string name;
  int cc_major = 0, cc_minor = 0;
  int multiprocessors = 0;
  size_t total_memory = 0;
  int clock_mhz = 0, memory_clock_mhz = 0;   // 0: not reported
  int ecc = -1;                              // 1 on, 0 off, -1 not reported
  bool mig = false;                          // a MIG instance (its name says so)
};

struct DeviceInfo {
  std::vector<GpuInfo> gpus;   // every visible device, in CUDA's order
  bool available = false;      // device 0 exists and this build's kernels run on it
  std::string reason;          // when !available: no driver/device, or one line naming the device,
                               // its compute capability and the built architectures (docs/cuda.md)
  int runtime_version = 0;     // e.g. 13000
  int driver_version = 0;
  int device_count = 0;
  std::string name;            // device 0
  int cc_major = 0, cc_minor = 0;
  size_t total_memory = 0;     // bytes
  int multiprocessors = 0;
};

// Never throws: a machine without a driver or device, or whose device 0 this build cannot run
// (compute capability below 7.5, or no SASS/PTX for it: host/backends/device_support.h), is
// reported in `reason`; `gpus` still lists every device.
DeviceInfo query_device();

// ---- device memory (kernels/device.cu) ----
// From one process-wide caching pool (docs/cuda.md, Device memory): device_free hands the block
// back to the pool, not to the driver, and does not synchronise. Out of memory throws
// RuntimeFault naming `what` (e.g. the layer), the bytes asked for and what the pool holds.
void* device_alloc(size_t bytes, const std::string& what);
void device_free(void* p) noexcept;
void copy_to_device(void* dst, const void* src, size_t bytes, const std::string& what);
void copy_to_host(void* dst, const void* src, size_t bytes, const std::string& what);
void device_fill_nan(void* p, size_t elements, bool is_double);   // poison before a launch
void device_synchronize(const std::string& what);
void copy_on_device(void* dst, const void* src, size_t bytes, const std::string& what);  // D2D

// ---- the one NaN of strict outputs (kernels/strict_nan.cu) ----
// Every NaN among the n floats at y becomes kStrictNanBits (host/strict_math.h). The CUDA
// backend applies it to every strict layer output (cuda_launch_layer), so the ops below may
// leave the hardware's NaN bits; the CPU strict path does the same in mode_forward.
void strict_canonical_nan(void* y, int64_t n, const std::string& layer);

// ---- GEMM core (kernels/gemm.cu) ----
// C[b][m][n] = sum_{k ascending} A[b][m][k] * B'[b][k][n]  (+ bias[n]), where
// A[b][m][k] = A[b*stride_a + m*lda + k], B'[b][k][n] = b_trans ? B[b*stride_b + n*ldb + k]
// : B[b*stride_b + k*ldb + n], C[b][m][n] = C[b*stride_c + m*ldc + n]. Mode semantics per
// docs/ops.md, Precision modes: fp64/fp32 SIMT; tf32/fp16/bf16 tensor cores with float accumulation
// (on sm_75 tf32/bf16 a SIMT loop with the same operand rounding: docs/cuda.md), operands
// converted as §5 says, bias added in float, fp16/bf16 output rounded to storage; strict: each
// output acc = fma(a_k, b_k, acc) for k = 0..K-1 from 0, then one rounding bias add.
struct GemmDesc {
  int64_t batch = 1, M = 0, N = 0, K = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
  bool b_trans = false;
};
void gemm(Mode mode, const GemmDesc& d, const void* A, const void* B, const void* bias, void* C,
          const std::string& layer);

// ---- conv2d as implicit GEMM (kernels/conv.cu) ----
// PyTorch conv2d, NCHW, weight [Co, C/groups, kh, kw], optional bias [Co]. The reduction index
// of each output runs over (input channel, kernel row, kernel column), last fastest.
struct Conv2dDesc {
  int64_t N = 0, C = 0, H = 0, W = 0;
  int64_t Co = 0, kh = 0, kw = 0, OH = 0, OW = 0;
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1, groups = 1;
};
void conv2d(Mode mode, const Conv2dDesc& d, const void* x, const void* w, const void* bias,
            void* y, const std::string& layer);

// ================================================================================================
// Non-GEMM ops, memory helpers' users and the statistics pass (kernels/batchnorm_layernorm.cu, softmax.cu,
// relu_gelu_add.cu, maxpool.cu, compare.cu). Same conventions as above: DEVICE pointers, double* for
// Mode::fp64 and float* (storage-valued) for every other mode; tf32 behaves as fp32 here (it is
// a GEMM operand format only). fp16/bf16 compute in float from storage-valued inputs and round
// each result once with round_storage; strict follows host/strict_math.h (docs/ops.md, Precision modes: strict reductions, §5.2)
// and is bitwise equal to the CPU strict path. Parameters (weights, running stats) are device
// arrays of the same element type, already rounded to the mode's storage by the caller.
// ================================================================================================

// ---- elementwise (kernels/relu_gelu_add.cu) ----
enum class UnaryOp { relu, gelu_erf, gelu_tanh };
void unary(Mode mode, UnaryOp op, const void* x, void* y, int64_t n, const std::string& layer);

// y = a + b with NumPy broadcasting of same-rank shapes (a dim of size 1 repeats); y has the
// broadcast shape. Rank at most kMaxBroadcastRank.
constexpr int kMaxBroadcastRank = 8;
void add(Mode mode, const std::vector<int64_t>& a_shape, const std::vector<int64_t>& b_shape,
         const void* a, const void* b, void* y, const std::string& layer);

// ---- norms (kernels/batchnorm_layernorm.cu) ----
// batchnorm2d (inference): x [N, C, S] (S = H*W), per-channel weight, bias, mean, var.
void batchnorm2d(Mode mode, int64_t N, int64_t C, int64_t S, double eps, const void* x,
                 const void* weight, const void* bias, const void* mean, const void* var, void* y,
                 const std::string& layer);
// layernorm over each of `rows` contiguous rows of D elements; weight, bias [D] may be null.
void layernorm(Mode mode, int64_t rows, int64_t D, double eps, const void* x, const void* weight,
               const void* bias, void* y, const std::string& layer);

// ---- softmax (kernels/softmax.cu) ----
// x viewed as [outer, n, inner]; softmax (or log_softmax) along n.
void softmax(Mode mode, int64_t outer, int64_t n, int64_t inner, bool log, const void* x, void* y,
             const std::string& layer);

// ---- pools (kernels/maxpool.cu) ----
struct Pool2dDesc {
  int64_t N = 0, C = 0, H = 0, W = 0, OH = 0, OW = 0;
  int64_t kh = 1, kw = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1;
};
// PyTorch maxpool2d: padding is -inf, NaN wins; OH/OW as the op table infers them (ceil_mode
// is already folded into OH/OW). Exact in every mode (a max does not round).
void maxpool2d(Mode mode, const Pool2dDesc& d, const void* x, void* y, const std::string& layer);

// ================================================================================================
// Second op set (kernels/conv_transpose.cu, groupnorm_rmsnorm.cu, activations_mul.cu, avgpool_upsample.cu, shape.cu,
// embedding.cu, attention.cu). Same conventions as the section above. log_softmax is softmax()
// with log = true.
// ================================================================================================

// ---- conv_transpose2d as implicit GEMM (kernels/conv_transpose.cu) ----
// PyTorch conv_transpose2d, NCHW, weight [C, Co/groups, kh, kw], optional bias [Co]. Gather form:
// out[n][g*Cog + m][oy][ox] = sum over k = (c, ky, kx), kx fastest, of
// w[g*Cg + c][m][ky][kx] * x[n][g*Cg + c][iy][ix] with oy = iy*sh - ph + ky*dh (likewise ox), the
// term zero where no integer iy in [0, H) (ix in [0, W)) exists -- and still one madd step, as
// the CPU reference's col buffer (host/reference/conv.cpp), so strict is bitwise equal to it.
// output_padding is folded into OH/OW.
struct ConvTranspose2dDesc {
  int64_t N = 0, C = 0, H = 0, W = 0;
  int64_t Co = 0, kh = 0, kw = 0, OH = 0, OW = 0;
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1, groups = 1;
};
void conv_transpose2d(Mode mode, const ConvTranspose2dDesc& d, const void* x, const void* w,
                      const void* bias, void* y, const std::string& layer);

// ---- groupnorm, rmsnorm (kernels/groupnorm_rmsnorm.cu) ----
// groupnorm: x [N, C, S] (S = product of the trailing dims); each (sample, group) block of
// C/groups channels x S positions is normalized as layernorm's row, then fma'd with the per-channel
// weight, bias [C] (either may be null).
void groupnorm(Mode mode, int64_t N, int64_t C, int64_t S, int64_t groups, double eps,
               const void* x, const void* weight, const void* bias, void* y,
               const std::string& layer);
// rmsnorm over each of `rows` contiguous rows of D elements: y = x / sqrt(sum(x^2) / D + eps) * w
// (weight [D] may be null).
void rmsnorm(Mode mode, int64_t rows, int64_t D, double eps, const void* x, const void* weight,
             void* y, const std::string& layer);

// ---- activations and mul (kernels/activations_mul.cu) ----
// `slope` is leaky_relu's negative_slope (ignored by the others).
enum class Activation { leaky_relu, silu, sigmoid, tanh };
void activation(Mode mode, Activation op, double slope, const void* x, void* y, int64_t n,
                const std::string& layer);
// y = a * b with add()'s broadcasting rules.
void mul(Mode mode, const std::vector<int64_t>& a_shape, const std::vector<int64_t>& b_shape,
         const void* a, const void* b, void* y, const std::string& layer);

// ---- average pools and upsampling (kernels/avgpool_upsample.cu) ----
// PyTorch avgpool2d on Pool2dDesc (dilation must be 1; ceil_mode folded into OH/OW): the window
// clipped to x is summed in row-major order (strict: the §5.1 lanes and tree over that order)
// and divided by its size, or with count_include_pad by the window clipped to [-pad, H + pad).
void avgpool2d(Mode mode, const Pool2dDesc& d, bool count_include_pad, const void* x, void* y,
               const std::string& layer);
// x [planes, S] -> y [planes]: the mean of each plane, summed in the §5.1 order.
void global_avgpool2d(Mode mode, int64_t planes, int64_t S, const void* x, void* y,
                      const std::string& layer);
// x [planes, H, W] -> y [planes, H*fy, W*fx], y[oy][ox] = x[oy / fy][ox / fx]. Exact.
void upsample_nearest2d(Mode mode, int64_t planes, int64_t H, int64_t W, int64_t fy, int64_t fx,
                        const void* x, void* y, const std::string& layer);

// ---- shape ops (kernels/shape.cu) ----
// reshape (and flatten): a device copy of n elements. Exact.
void reshape_copy(Mode mode, int64_t n, const void* x, void* y, const std::string& layer);
// y[i_0, ..., i_{r-1}] = x[j] with j[dims[d]] = i_d (dims non-negative, a permutation; rank at
// most kMaxBroadcastRank). Exact.
void permute(Mode mode, const std::vector<int64_t>& x_shape, const std::vector<int64_t>& dims,
             const void* x, void* y, const std::string& layer);

// ---- embedding (kernels/embedding.cu) ----
// y[i][d] = weight[idx[i]][d] for n indices (held as values of the mode's element type) and a
// [V, D] table. An index that is not an integer in [0, V) throws InputError naming the layer,
// the index and its flat position (the first such position).
void embedding(Mode mode, int64_t n, int64_t V, int64_t D, const void* idx, const void* weight,
               void* y, const std::string& layer);

// ---- scaled_dot_product_attention (kernels/attention.cu) ----
// Per head h < heads: s = q k^T (gemm), s = store(s * scale) with -inf above the diagonal when
// causal (query i sees keys j <= i), p = softmax rows of s, y = p v (gemm) -- the CPU reference's
// steps (host/reference/attention.cpp), each result stored in the mode's format.
// q [heads, Tq, D], k [heads, Tk, D], v [heads, Tk, Dv], y [heads, Tq, Dv].
void scaled_dot_product_attention(Mode mode, int64_t heads, int64_t Tq, int64_t Tk, int64_t D,
                                  int64_t Dv, bool causal, double scale, const void* q,
                                  const void* k, const void* v, void* y, const std::string& layer);

// ================================================================================================
// Model format v2 ops (kernels/unary_math.cu, binary_where.cu, reduce.cu, concat_slice_expand.cu,
// adaptive_avgpool2d in avgpool_upsample.cu). Same conventions as above. Binary ops and where
// broadcast as add() does (same rank, each dim equal or 1 -- the batch dim included, so a constant
// input of batch 1 repeats over the batch). `split` is lowered to slice by the model loader.
// ================================================================================================

// ---- unary math (kernels/unary_math.cu) ----
// hardtanh: min(max(x, lo), hi) (lo, hi only used by it); hardswish: x * min(max(x + 3, 0), 6) / 6;
// hardsigmoid: min(max(x + 3, 0), 6) / 6; rsqrt: 1 / sqrt(x) (two IEEE roundings, never the
// approximate instruction); neg flips the sign bit. NaN stays NaN in every op.
enum class MathOp { hardtanh, hardswish, hardsigmoid, sqrt, rsqrt, exp, log, abs, neg, erf };
void unary_math(Mode mode, MathOp op, double lo, double hi, const void* x, void* y, int64_t n,
                const std::string& layer);

// ---- binary ops and where (kernels/binary_where.cu) ----
// y = a op b with add()'s broadcasting. maximum/minimum propagate NaN; pow follows pow/powf
// (strict: strict_pow).
enum class BinaryOp { sub, div, pow, maximum, minimum };
void binary(Mode mode, BinaryOp op, const std::vector<int64_t>& a_shape,
            const std::vector<int64_t>& b_shape, const void* a, const void* b, void* y,
            const std::string& layer);
// y = cond != 0 ? a : b, the three shapes broadcast together (same rank, each dim equal or 1).
// A copy of stored values: exact in every mode (a NaN cond counts as true).
void where(Mode mode, const std::vector<int64_t>& cond_shape, const std::vector<int64_t>& a_shape,
           const std::vector<int64_t>& b_shape, const void* cond, const void* a, const void* b,
           void* y, const std::string& layer);

// ---- reductions (kernels/reduce.cu) ----
// y = mean / sum / amax of x over `axes` (non-negative, distinct, ascending or not; rank at most
// kMaxBroadcastRank); y holds the kept dims in order (keepdim does not change the layout). The
// reduced elements of each output are visited row-major over the reduced dims: sums left to right
// from 0 in the non-strict modes (fp16/bf16 accumulate in float, rounded once at the end), the §5.1
// lanes and tree in strict; max lets NaN win (strict: strict_max_step, strict_max_finish); mean is
// the sum divided by the reduced count.
enum class ReduceOp { mean, sum, max };
void reduce(Mode mode, ReduceOp op, const std::vector<int64_t>& x_shape,
            const std::vector<int64_t>& axes, const void* x, void* y, const std::string& layer);

// ---- concat, slice, expand (kernels/concat_slice_expand.cu) ----
// Copies of stored values: exact in every mode.
// concat along `axis` (non-negative): every input has the rank and dims of the output except at
// `axis`; y's dim there is the sum of theirs.
void concat(Mode mode, const std::vector<std::vector<int64_t>>& in_shapes,
            const std::vector<const void*>& in, int64_t axis, void* y, const std::string& layer);
// y = x[..., start : start + step * out_dim : step, ...] along `axis` (non-negative).
void slice(Mode mode, const std::vector<int64_t>& x_shape, int64_t axis, int64_t start,
           int64_t step, int64_t out_dim, const void* x, void* y, const std::string& layer);
// y[i] = x[i with every index along a size-1 dim of x set to 0]: x broadcast to out_shape (same
// rank; each dim of x equal to the output's or 1, the batch dim included).
void expand(Mode mode, const std::vector<int64_t>& x_shape, const std::vector<int64_t>& out_shape,
            const void* x, void* y, const std::string& layer);

// ---- adaptive average pool (kernels/avgpool_upsample.cu) ----
// x [planes, H, W] -> y [planes, OH, OW]: output (i, j) is the mean of the window rows
// [floor(i*H/OH), ceil((i+1)*H/OH)) x columns [floor(j*W/OW), ceil((j+1)*W/OW)), summed as
// avgpool2d sums its (clipped) window.
void adaptive_avgpool2d(Mode mode, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                        const void* x, void* y, const std::string& layer);

// ---- statistics (kernels/compare.cu) ----
// LayerStats of a device candidate against the device FP64 reference, by the definitions of
// host/compare.cpp (README, What divscope run computes). `storage` is the format whose ULPs are counted (it replaces
// opt.storage). Deterministic: the same inputs give the same bits. Histogram counts are exact;
// sums may differ from the CPU's in the last bits (different summation order).
LayerStats compare_device(Mode storage, const float* cand_dev, const double* ref_dev,
                          const Shape& shape, const CompareOptions& opt, const std::string& layer);
LayerStats compare_device(Mode storage, const double* cand_dev, const double* ref_dev,
                          const Shape& shape, const CompareOptions& opt, const std::string& layer);
// Per sample (dim 0), as compare_per_sample.
std::vector<LayerStats> compare_device_per_sample(Mode storage, const float* cand_dev,
                                                  const double* ref_dev, const Shape& shape,
                                                  const CompareOptions& opt,
                                                  const std::string& layer);
std::vector<LayerStats> compare_device_per_sample(Mode storage, const double* cand_dev,
                                                  const double* ref_dev, const Shape& shape,
                                                  const CompareOptions& opt,
                                                  const std::string& layer);

// ================================================================================================
// Device-resident values (kernels/device.cu, kernels/values.cu; host/backends/cuda_backend.cpp):
// the pool's accounting and the element-wise steps the analysis runs between layers, so that a
// batch's tensors never leave the device. Same conventions as above.
// ================================================================================================

// The pool behind device_alloc: bytes live, peak, reserved (live + cached), cudaMalloc calls,
// requests, its limit (free device memory at the first allocation or the first call of this,
// less a margin; < 0 without a device).
CachingPool::Stats device_memory_stats();
void device_memory_release_cached();   // every cached block back to the driver
void device_memory_reset_peak();       // peak = live

// y[i] = round ? round_storage(m, float(x[i])) : float(x[i]) for the n doubles (x_is_double) or
// floats at x; bit for bit the CPU's to_storage (host/analysis/analysis.cpp), NaN payloads
// included.
void to_storage_device(Mode m, bool round, const void* x, bool x_is_double, float* y, int64_t n,
                       const std::string& layer);
// y[k] = x[k] * probe_factor(batch, value, k) (host/reference/probe.h), bit for bit the host's.
void perturb_device(const double* x, double* y, int64_t n, int64_t batch, int64_t value,
                    const std::string& layer);
// How many of the n floats differ in their bits between a and b.
int64_t count_bit_differences_device(const float* a, const float* b, int64_t n,
                                     const std::string& layer);

}  // namespace divscope
