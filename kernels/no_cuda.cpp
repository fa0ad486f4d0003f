// CPU-only build (-DDIVSCOPE_CUDA=OFF): the device query says why there is no device, and every
// other entry point of kernels.h throws, so host code and tests link unchanged and decide at run
// time (query_device().available) whether to call them.
#include "kernels/kernels.h"

#include "host/errors.h"

namespace divscope {
namespace {
[[noreturn]] void no_cuda(const char* what) {
  throw RuntimeFault(std::string(what) + ": divscope was built without CUDA (-DDIVSCOPE_CUDA=OFF)");
}
}  // namespace

DeviceInfo query_device() {
  DeviceInfo info;
  info.available = false;
  info.reason = "divscope was built without CUDA (-DDIVSCOPE_CUDA=OFF)";
  return info;
}

void* device_alloc(size_t, const std::string&) { no_cuda("device_alloc"); }
void device_free(void*) noexcept {}
void copy_to_device(void*, const void*, size_t, const std::string&) { no_cuda("copy_to_device"); }
void copy_to_host(void*, const void*, size_t, const std::string&) { no_cuda("copy_to_host"); }
void device_fill_nan(void*, size_t, bool) { no_cuda("device_fill_nan"); }
void device_synchronize(const std::string&) { no_cuda("device_synchronize"); }
void copy_on_device(void*, const void*, size_t, const std::string&) { no_cuda("copy_on_device"); }

void strict_canonical_nan(void*, int64_t, const std::string&) { no_cuda("strict_canonical_nan"); }

void gemm(Mode, const GemmDesc&, const void*, const void*, const void*, void*, const std::string&) {
  no_cuda("gemm");
}
void conv2d(Mode, const Conv2dDesc&, const void*, const void*, const void*, void*,
            const std::string&) {
  no_cuda("conv2d");
}
void unary(Mode, UnaryOp, const void*, void*, int64_t, const std::string&) { no_cuda("unary"); }
void add(Mode, const std::vector<int64_t>&, const std::vector<int64_t>&, const void*, const void*,
         void*, const std::string&) {
  no_cuda("add");
}
void batchnorm2d(Mode, int64_t, int64_t, int64_t, double, const void*, const void*, const void*,
                 const void*, const void*, void*, const std::string&) {
  no_cuda("batchnorm2d");
}
void layernorm(Mode, int64_t, int64_t, double, const void*, const void*, const void*, void*,
               const std::string&) {
  no_cuda("layernorm");
}
void softmax(Mode, int64_t, int64_t, int64_t, bool, const void*, void*, const std::string&) {
  no_cuda("softmax");
}
void maxpool2d(Mode, const Pool2dDesc&, const void*, void*, const std::string&) {
  no_cuda("maxpool2d");
}
// ---- second op set (conv_transpose.cu, groupnorm_rmsnorm.cu, activations_mul.cu, avgpool_upsample.cu, shape.cu,
// embedding.cu, attention.cu) ----
void conv_transpose2d(Mode, const ConvTranspose2dDesc&, const void*, const void*, const void*,
                      void*, const std::string&) {
  no_cuda("conv_transpose2d");
}
void groupnorm(Mode, int64_t, int64_t, int64_t, int64_t, double, const void*, const void*,
               const void*, void*, const std::string&) {
  no_cuda("groupnorm");
}
void rmsnorm(Mode, int64_t, int64_t, double, const void*, const void*, void*, const std::string&) {
  no_cuda("rmsnorm");
}
void activation(Mode, Activation, double, const void*, void*, int64_t, const std::string&) {
  no_cuda("activation");
}
void mul(Mode, const std::vector<int64_t>&, const std::vector<int64_t>&, const void*, const void*,
         void*, const std::string&) {
  no_cuda("mul");
}
void avgpool2d(Mode, const Pool2dDesc&, bool, const void*, void*, const std::string&) {
  no_cuda("avgpool2d");
}
void global_avgpool2d(Mode, int64_t, int64_t, const void*, void*, const std::string&) {
  no_cuda("global_avgpool2d");
}
void upsample_nearest2d(Mode, int64_t, int64_t, int64_t, int64_t, int64_t, const void*, void*,
                        const std::string&) {
  no_cuda("upsample_nearest2d");
}
void reshape_copy(Mode, int64_t, const void*, void*, const std::string&) { no_cuda("reshape_copy"); }
void permute(Mode, const std::vector<int64_t>&, const std::vector<int64_t>&, const void*, void*,
             const std::string&) {
  no_cuda("permute");
}
void embedding(Mode, int64_t, int64_t, int64_t, const void*, const void*, void*,
               const std::string&) {
  no_cuda("embedding");
}
void scaled_dot_product_attention(Mode, int64_t, int64_t, int64_t, int64_t, int64_t, bool, double,
                                  const void*, const void*, const void*, void*,
                                  const std::string&) {
  no_cuda("scaled_dot_product_attention");
}
// ---- model format v2 ops (unary_math.cu, binary_where.cu, reduce.cu, concat_slice_expand.cu,
// avgpool_upsample.cu) ----
void unary_math(Mode, MathOp, double, double, const void*, void*, int64_t, const std::string&) {
  no_cuda("unary_math");
}
void binary(Mode, BinaryOp, const std::vector<int64_t>&, const std::vector<int64_t>&, const void*,
            const void*, void*, const std::string&) {
  no_cuda("binary");
}
void where(Mode, const std::vector<int64_t>&, const std::vector<int64_t>&,
           const std::vector<int64_t>&, const void*, const void*, const void*, void*,
           const std::string&) {
  no_cuda("where");
}
void reduce(Mode, ReduceOp, const std::vector<int64_t>&, const std::vector<int64_t>&, const void*,
            void*, const std::string&) {
  no_cuda("reduce");
}
void concat(Mode, const std::vector<std::vector<int64_t>>&, const std::vector<const void*>&, int64_t,
            void*, const std::string&) {
  no_cuda("concat");
}
void slice(Mode, const std::vector<int64_t>&, int64_t, int64_t, int64_t, int64_t, const void*, void*,
           const std::string&) {
  no_cuda("slice");
}
void expand(Mode, const std::vector<int64_t>&, const std::vector<int64_t>&, const void*, void*,
            const std::string&) {
  no_cuda("expand");
}
void adaptive_avgpool2d(Mode, int64_t, int64_t, int64_t, int64_t, int64_t, const void*, void*,
                        const std::string&) {
  no_cuda("adaptive_avgpool2d");
}
LayerStats compare_device(Mode, const float*, const double*, const Shape&, const CompareOptions&,
                          const std::string&) {
  no_cuda("compare_device");
}
LayerStats compare_device(Mode, const double*, const double*, const Shape&, const CompareOptions&,
                          const std::string&) {
  no_cuda("compare_device");
}
std::vector<LayerStats> compare_device_per_sample(Mode, const float*, const double*, const Shape&,
                                                  const CompareOptions&, const std::string&) {
  no_cuda("compare_device_per_sample");
}
std::vector<LayerStats> compare_device_per_sample(Mode, const double*, const double*, const Shape&,
                                                  const CompareOptions&, const std::string&) {
  no_cuda("compare_device_per_sample");
}

// ---- device-resident values (device.cu, values.cu) ----
// No pool without CUDA: empty statistics, so memory reports work in every build.
CachingPool::Stats device_memory_stats() { return {}; }
void device_memory_release_cached() {}
void device_memory_reset_peak() {}
void to_storage_device(Mode, bool, const void*, bool, float*, int64_t, const std::string&) {
  no_cuda("to_storage_device");
}
void perturb_device(const double*, double*, int64_t, int64_t, int64_t, const std::string&) {
  no_cuda("perturb_device");
}
int64_t count_bit_differences_device(const float*, const float*, int64_t, const std::string&) {
  no_cuda("count_bit_differences_device");
}

}  // namespace divscope
