// The CUDA backend (README, What divscope run computes, §2): the FP64 reference, every mode and the
// statistics on our own kernels, on values that stay in device memory (backends/values.h,
// docs/cuda.md, Device memory). A batch's tensors are device values from the pool
// (kernels/device.cu); the host receives statistics, and tensors only where it downloads them.
// Layer parameters are uploaded once per analysis and storage format (CudaParamCache). The
// host-tensor calls upload, run the value call and download.
#include "backends/backend.h"
#include "backends/cuda_backend.h"
#include "errors.h"

#ifdef DIVSCOPE_HAVE_CUDA
#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <utility>

#include "kernels/kernels.h"
#include "graph/ops.h"
#endif

namespace divscope {

#ifndef DIVSCOPE_HAVE_CUDA

std::unique_ptr<Backend> make_cuda_backend() {
  throw RuntimeFault("divscope was built without CUDA");
}

#else

namespace {

// A device value of `shape` whose storage goes back to the pool with its last handle. Zero
// elements: no storage, but still a value (a non-null owner).
Value device_value(Shape shape, bool is_double, const std::string& what) {
  const size_t bytes = static_cast<size_t>(numel(shape)) * (is_double ? sizeof(double) : sizeof(float));
  void* p = device_alloc(bytes, what);
  std::shared_ptr<void> owner = p ? std::shared_ptr<void>(p, [](void* q) { device_free(q); })
                                  : std::static_pointer_cast<void>(std::make_shared<char>(0));
  return Value(std::move(shape), is_double, Value::Where::device, p, std::move(owner));
}

const char* describe(const Value& v) {
  if (!v) return "an empty value";
  if (v.where() == Value::Where::host) return v.is_double() ? "a host double value" : "a host float value";
  return v.is_double() ? "a device double value" : "a device float value";
}

// The device value `v` must be (of the type asked for); anything else is a caller's bug.
const Value& need_device(const Value& v, bool is_double, const char* what, const std::string& layer) {
  if (v.where() != Value::Where::device || v.is_double() != is_double)
    throw RuntimeFault(std::string("cuda backend: ") + what + " needs a device " +
                       (is_double ? "double" : "float") + " value, got " + describe(v) +
                       " (layer '" + layer + "')");
  return v;
}
const Value& need_device(const Value& v, const char* what, const std::string& layer) {
  return need_device(v, v.is_double(), what, layer);
}

template <class T>
Value upload_tensor(const BasicTensor<T>& t, const std::string& what) {
  if (t.size() != numel(t.shape))
    throw InputError("malformed tensor: " + std::to_string(t.size()) + " values for shape " +
                     shape_str(t.shape) + " (" + what + ")");
  Value v = device_value(t.shape, std::is_same<T, double>::value, what);
  copy_to_device(v.data(), t.data.data(), v.bytes(), what);
  return v;
}

template <class T>
BasicTensor<T> download_tensor(const Value& v, const char* what) {
  need_device(v, std::is_same<T, double>::value, what, "download");
  BasicTensor<T> t(v.shape());
  copy_to_host(t.data.data(), v.data(), v.bytes(), what);
  return t;
}

// Whole-tensor stats and, with `samples`, the per-sample errors (as the CPU compare gathers them).
template <class C>
LayerStats compare_values(const C* cand, const double* ref, const Shape& shape,
                          const CompareOptions& opt, SampleErrors* samples, const std::string& layer) {
  LayerStats whole = compare_device(opt.storage, cand, ref, shape, opt, layer);
  if (!samples || shape.empty()) return whole;
  const std::vector<LayerStats> per = compare_device_per_sample(opt.storage, cand, ref, shape, opt, layer);
  samples->mismatch.clear();
  samples->nonfinite_new.clear();
  samples->err2.clear();
  samples->ref2.clear();
  samples->max_abs.clear();
  for (const LayerStats& s : per) {
    samples->mismatch.push_back(s.mismatch);
    samples->nonfinite_new.push_back(s.nonfinite_new);
    samples->err2.push_back(s.sum_err2);
    samples->ref2.push_back(s.sum_ref2);
    samples->max_abs.push_back(s.max_abs);
  }
  return whole;
}

class CudaBackend : public Backend {
 public:
  std::string name() const override { return "cuda"; }

  // ---- host tensors: upload, the value call, download ----
  void reference(const Layer& l, const std::vector<const Tensor*>& in, Tensor& out) override {
    const std::vector<Value> v = upload_inputs(l, in);
    out = download(reference(l, pointers(v)));
  }
  void forward(Mode m, const Layer& l, const std::vector<const TensorF*>& in,
               TensorF& out) override {
    const std::vector<Value> v = upload_inputs(l, in);
    out = download_float(forward(m, l, pointers(v)));
  }
  // README, What divscope run computes on the device (kernels/compare.cu: one fused CUB pass,
  // histograms, segmented per-sample reduction); same definitions as the CPU compare.
  LayerStats compare(const TensorF& cand, const Tensor& ref, const CompareOptions& opt,
                     SampleErrors* samples, const std::string& layer) override {
    return compare(upload_tensor(cand, layer + " (candidate)"), upload_tensor(ref, layer + " (reference)"),
                   opt, samples, layer);
  }

  // ---- values ----
  Value upload(const Tensor& t) override { return upload_tensor(t, "upload"); }
  Value upload(const TensorF& t) override { return upload_tensor(t, "upload"); }
  Tensor download(const Value& v) override {
    return v.where() == Value::Where::host ? Backend::download(v) : download_tensor<double>(v, "download");
  }
  TensorF download_float(const Value& v) override {
    return v.where() == Value::Where::host ? Backend::download_float(v)
                                           : download_tensor<float>(v, "download_float");
  }

  Value reference(const Layer& l, const std::vector<const Value*>& in) override {
    return run(Mode::fp64, l, in);
  }
  Value forward(Mode m, const Layer& l, const std::vector<const Value*>& in) override {
    if (m == Mode::fp64)
      throw RuntimeFault("cuda backend: fp64 is the reference, not a float mode (" + l.where() + ")");
    return run(m, l, in);
  }

  Value to_storage(const Value& v, Mode m, bool round) override {
    need_device(v, "to_storage", "to_storage");
    Value out = device_value(v.shape(), false, "to_storage");
    to_storage_device(m, round, v.data(), v.is_double(), static_cast<float*>(out.data()), v.size(),
                      "to_storage");
    return out;
  }

  Value perturbed(const Value& v, int64_t batch, int64_t value) override {
    need_device(v, true, "perturbed", "probe");
    Value out = device_value(v.shape(), true, "probe perturbation");
    perturb_device(static_cast<const double*>(v.data()), static_cast<double*>(out.data()), v.size(),
                   batch, value, "probe");
    return out;
  }

  LayerStats compare(const Value& cand, const Value& ref, const CompareOptions& opt,
                     SampleErrors* samples, const std::string& layer) override {
    need_device(ref, true, "compare (reference)", layer);
    need_device(cand, "compare (candidate)", layer);
    if (cand.size() != ref.size())   // the CPU compare reads the candidate by the reference's shape
      throw RuntimeFault("cuda backend: compare of " + shape_str(cand.shape()) + " against " +
                         shape_str(ref.shape()) + " (layer '" + layer + "')");
    const auto* r = static_cast<const double*>(ref.data());
    if (cand.is_double())
      return compare_values(static_cast<const double*>(cand.data()), r, ref.shape(), opt, samples, layer);
    return compare_values(static_cast<const float*>(cand.data()), r, ref.shape(), opt, samples, layer);
  }

  int64_t bitwise_differences(const Value& a, const Value& b) override {
    need_device(a, false, "bitwise_differences", "bitwise");
    need_device(b, false, "bitwise_differences", "bitwise");
    if (a.shape() != b.shape()) return std::max(a.size(), b.size());
    return count_bit_differences_device(static_cast<const float*>(a.data()),
                                        static_cast<const float*>(b.data()), a.size(), "bitwise");
  }

  // The health fields from the statistics pass with the reference as its own (double)
  // candidate; per sample the same pass segmented.
  ReferenceSummary summarize(const Value& ref) override {
    need_device(ref, true, "summarize", "summarize");
    const auto* r = static_cast<const double*>(ref.data());
    const CompareOptions opt{Mode::fp64, 0, 0, -1, true};
    ReferenceSummary s;
    copy_health(s.health, compare_device(Mode::fp64, r, r, ref.shape(), opt, "summarize"));
    if (s.health.ref_finite > 0)
      s.abs_max = std::max(std::fabs(s.health.ref_min), std::fabs(s.health.ref_max));
    const std::vector<LayerStats> per = compare_device_per_sample(Mode::fp64, r, r, ref.shape(), opt, "summarize");
    const int64_t count = per.empty() ? 0 : ref.size() / static_cast<int64_t>(per.size());
    for (const LayerStats& p : per) {
      SampleHealth h;
      h.nan = p.ref_nan;
      h.inf = p.ref_inf;
      h.nonfinite = p.ref_nan + p.ref_inf;
      h.all_zero = p.ref_zero == count;
      s.samples.push_back(h);
    }
    return s;
  }

  // The pool's bytes: values, the analysis' parameters and CUB temporaries alike.
  ValueMemory memory() const override {
    const CachingPool::Stats p = device_memory_stats();
    return ValueMemory{p.live, p.peak, p.reserved, p.system_allocs, p.requests, p.limit};
  }
  void reset_peak() override { device_memory_reset_peak(); }

  void begin_analysis(const Model&) override {
    params_.clear();
    cache_params_ = true;
  }
  void end_analysis() override {
    cache_params_ = false;
    params_.clear();
  }

 private:
  // Layer l on device values: the output from the pool, the launch on the inputs' storage.
  Value run(Mode m, const Layer& l, const std::vector<const Value*>& in) {
    const bool dbl = m == Mode::fp64;
    std::vector<Shape> shapes;
    std::vector<const void*> ptrs;
    for (const Value* v : in) {
      if (!v) throw RuntimeFault("cuda backend: missing input of " + l.where());
      need_device(*v, dbl, dbl ? "reference" : "forward", l.name);
      shapes.push_back(v->shape());
      ptrs.push_back(v->data());
    }
    Value out = device_value(checked_out_shape(l, shapes), dbl, l.name + " output");
    cuda_launch_layer(m, l, shapes, ptrs, out.data(), cache_params_ ? &params_ : nullptr);
    return out;
  }

  template <class T>
  static std::vector<Value> upload_inputs(const Layer& l, const std::vector<const BasicTensor<T>*>& in) {
    std::vector<Value> v;
    for (const auto* t : in) {
      if (!t || t->size() != numel(t->shape)) throw InputError(l.where() + ": malformed input tensor");
      v.push_back(upload_tensor(*t, l.name + " input"));
    }
    return v;
  }
  static std::vector<const Value*> pointers(const std::vector<Value>& v) {
    std::vector<const Value*> p;
    for (const Value& x : v) p.push_back(&x);
    return p;
  }

  CudaParamCache params_;
  bool cache_params_ = false;   // between begin_analysis and end_analysis
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend() {
  const DeviceInfo d = query_device();
  if (!d.available) throw RuntimeFault("no CUDA device: " + d.reason);
  return std::make_unique<CudaBackend>();
}

#endif

}  // namespace divscope
