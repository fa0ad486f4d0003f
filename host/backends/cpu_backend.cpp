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
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace divscope
