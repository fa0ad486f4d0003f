// The CPU backend: FP64 reference and the CPU emulation of every mode (docs/ops.md, Precision modes).
#include "backends/backend.h"
#include "reference/modes.h"
#include "reference/reference.h"

namespace divscope {
namespace {

class CpuBackend : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  void reference(const Layer& l, const std::vector<const Tensor*>& in, Tensor& out) override {
    reference_forward(l, in, out);
  }
  void forward(Mode m, const Layer& l, const std::vector<const TensorF*>& in,
               TensorF& out) override {
    mode_forward(m, l, in, out);
  }
  bool reference_in_place(const Layer& l, const std::vector<const Tensor*>& in, size_t k, Tensor& io) override {
    return layer_forward_in_place<Fp64Policy>(l, in, k, io);
  }
  bool forward_in_place(Mode m, const Layer& l, const std::vector<const TensorF*>& in, size_t k,
                        TensorF& io) override {
    return mode_forward_in_place(m, l, in, k, io);
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace divscope
