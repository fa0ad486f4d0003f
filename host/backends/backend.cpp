#include "backends/backend.h"

namespace divscope {

LayerStats Backend::compare(const TensorF& cand, const Tensor& ref, const CompareOptions& opt,
                            SampleErrors* samples, const std::string&) {
  return compare_tensors(cand.ptr(), ref.ptr(), ref.shape, opt, samples);
}

}  // namespace divscope
