// The Backend's host defaults (backends/backend.h): values in host memory, the CPU reference,
// mode emulation and compare. The CPU backend uses them as they are; the CUDA backend overrides
// every Value method with device memory (host/backends/cuda_backend.cpp).
#include "backends/backend.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <type_traits>

#include "errors.h"
#include "reference/modes.h"
#include "reference/probe.h"
#include "reference/reference.h"

namespace divscope {

LayerStats Backend::compare(const TensorF& cand, const Tensor& ref, const CompareOptions& opt,
                            SampleErrors* samples, const std::string&) {
  return compare_tensors(cand.ptr(), ref.ptr(), ref.shape, opt, samples);
}

// Bytes of host values: live now, the peak, values made.
struct Backend::HostCounter {
  std::mutex mu;
  int64_t live = 0, peak = 0, made = 0;
  void add(int64_t n) {
    std::lock_guard<std::mutex> lock(mu);
    live += n;
    ++made;
    peak = std::max(peak, live);
  }
  void sub(int64_t n) {
    std::lock_guard<std::mutex> lock(mu);
    live -= n;
  }
};

Backend::Backend() : host_counter_(std::make_shared<HostCounter>()) {}

Backend::HostCounter& Backend::counter() { return *host_counter_; }

namespace {

// What owns a host value's tensor (the owner's stored pointer, read back by host_tensor).
template <class T>
struct HostBox {
  BasicTensor<T> t;
};

template <class T>
const BasicTensor<T>* host_tensor(const Value& v) {
  if (v.where() != Value::Where::host || v.is_double() != std::is_same<T, double>::value) return nullptr;
  return &static_cast<const HostBox<T>*>(v.owner().get())->t;
}

template <class T>
const BasicTensor<T>& need_host(const Value& v, const char* what) {
  const BasicTensor<T>* t = host_tensor<T>(v);
  if (!t)
    throw RuntimeFault(std::string("backend: ") + what + " needs a host " +
                       (std::is_same<T, double>::value ? "double" : "float") + " value");
  return *t;
}

template <class T>
std::vector<const BasicTensor<T>*> host_inputs(const std::vector<const Value*>& in, const char* what) {
  std::vector<const BasicTensor<T>*> v;
  v.reserve(in.size());
  for (const Value* x : in) v.push_back(&need_host<T>(*x, what));
  return v;
}

// The host tensor of in[donate] when the caller may give it up: a host value of type T that no
// other handle holds (the caller's slot is the only owner); else nullptr.
template <class T>
BasicTensor<T>* donated_host_tensor(const std::vector<const Value*>& in, int donate) {
  if (donate < 0 || static_cast<size_t>(donate) >= in.size()) return nullptr;
  const Value& v = *in[static_cast<size_t>(donate)];
  if (v.where() != Value::Where::host || v.is_double() != std::is_same<T, double>::value ||
      v.owner().use_count() != 1)
    return nullptr;
  return const_cast<BasicTensor<T>*>(host_tensor<T>(v));
}

}  // namespace

Value Backend::reference_donating(const Layer& l, const std::vector<const Value*>& in, int donate) {
  if (Tensor* io = donated_host_tensor<double>(in, donate)) {
    if (reference_in_place(l, host_inputs<double>(in, "reference"), static_cast<size_t>(donate), *io))
      return Value(io->shape, true, Value::Where::host, io->ptr(), in[static_cast<size_t>(donate)]->owner());
  }
  return reference(l, in);
}

Value Backend::forward_donating(Mode m, const Layer& l, const std::vector<const Value*>& in, int donate) {
  if (TensorF* io = donated_host_tensor<float>(in, donate)) {
    if (forward_in_place(m, l, host_inputs<float>(in, "forward"), static_cast<size_t>(donate), *io))
      return Value(io->shape, false, Value::Where::host, io->ptr(), in[static_cast<size_t>(donate)]->owner());
  }
  return forward(m, l, in);
}

template <class T>
Value Backend::make_host_value(BasicTensor<T> t) {
  std::shared_ptr<HostCounter> c = host_counter_;
  auto box = new HostBox<T>{std::move(t)};
  const int64_t bytes = static_cast<int64_t>(box->t.data.size() * sizeof(T));
  c->add(bytes);
  void* data = box->t.data.data();
  Shape shape = box->t.shape;
  return Value(std::move(shape), std::is_same<T, double>::value, Value::Where::host, data,
               std::shared_ptr<void>(box, [c, bytes](void* p) {
                 delete static_cast<HostBox<T>*>(p);
                 c->sub(bytes);
               }));
}

Value Backend::host_value(Tensor t) { return make_host_value(std::move(t)); }
Value Backend::host_value(TensorF t) { return make_host_value(std::move(t)); }

const Tensor* Backend::host_double(const Value& v) { return host_tensor<double>(v); }
const TensorF* Backend::host_float(const Value& v) { return host_tensor<float>(v); }

Value Backend::upload(const Tensor& t) { return host_value(Tensor(t)); }
Value Backend::upload(const TensorF& t) { return host_value(TensorF(t)); }
Tensor Backend::download(const Value& v) { return need_host<double>(v, "download"); }
TensorF Backend::download_float(const Value& v) { return need_host<float>(v, "download_float"); }

Value Backend::reference(const Layer& l, const std::vector<const Value*>& in) {
  Tensor out;
  reference(l, host_inputs<double>(in, "reference"), out);
  return host_value(std::move(out));
}

Value Backend::forward(Mode m, const Layer& l, const std::vector<const Value*>& in) {
  TensorF out;
  forward(m, l, host_inputs<float>(in, "forward"), out);
  return host_value(std::move(out));
}

Value Backend::to_storage(const Value& v, Mode m, bool round) {
  if (v.is_double()) return host_value(divscope::to_storage(need_host<double>(v, "to_storage"), m, round));
  return host_value(divscope::to_storage(need_host<float>(v, "to_storage"), m, round));
}

Value Backend::perturbed(const Value& v, int64_t batch, int64_t value) {
  Tensor t = need_host<double>(v, "perturbed");
  for (int64_t k = 0; k < t.size(); ++k) t.data[k] *= probe_factor(batch, value, k);
  return host_value(std::move(t));
}

Value Backend::perturbed_donating(Value v, int64_t batch, int64_t value) {
  const std::vector<const Value*> in = {&v};
  if (Tensor* t = donated_host_tensor<double>(in, 0)) {
    for (int64_t k = 0; k < t->size(); ++k) t->data[k] *= probe_factor(batch, value, k);
    return v;
  }
  return perturbed(v, batch, value);
}

LayerStats Backend::compare(const Value& cand, const Value& ref, const CompareOptions& opt,
                            SampleErrors* samples, const std::string&) {
  const Tensor& r = need_host<double>(ref, "compare");
  if (cand.is_double())
    return compare_tensors(need_host<double>(cand, "compare").ptr(), r.ptr(), r.shape, opt, samples);
  return compare_tensors(need_host<float>(cand, "compare").ptr(), r.ptr(), r.shape, opt, samples);
}

int64_t Backend::bitwise_differences(const Value& a, const Value& b) {
  const TensorF& x = need_host<float>(a, "bitwise_differences");
  const TensorF& y = need_host<float>(b, "bitwise_differences");
  if (x.shape != y.shape) return std::max(x.size(), y.size());
  int64_t n = 0;
  for (int64_t i = 0; i < x.size(); ++i) n += f32_bits(x.data[i]) != f32_bits(y.data[i]);
  return n;
}

ReferenceSummary Backend::summarize(const Value& ref) {
  const Tensor& r = need_host<double>(ref, "summarize");
  return summarize_host(r.ptr(), r.shape);
}

ValueMemory Backend::memory() const {
  ValueMemory m;
  std::lock_guard<std::mutex> lock(host_counter_->mu);
  m.live = host_counter_->live;
  m.peak = host_counter_->peak;
  m.requests = m.system_allocs = host_counter_->made;
  return m;
}

void Backend::reset_peak() {
  HostCounter& c = counter();
  std::lock_guard<std::mutex> lock(c.mu);
  c.peak = c.live;
}

ReferenceSummary summarize_host(const double* ref, const Shape& shape) {
  ReferenceSummary s;
  const int64_t total = numel(shape);
  const int64_t N = shape.empty() ? 0 : shape[0];
  const int64_t per = N > 0 ? total / N : 0;
  std::vector<uint8_t> bad, nonzero;
  s.health = reference_health(ref, total, per, N > 0 ? &bad : nullptr, N > 0 ? &nonzero : nullptr);
  if (s.health.ref_finite > 0) s.abs_max = std::max(std::fabs(s.health.ref_min), std::fabs(s.health.ref_max));
  s.samples.resize(static_cast<size_t>(std::max<int64_t>(N, 0)));
  for (int64_t i = 0; i < N; ++i) {
    SampleHealth& h = s.samples[i];
    h.all_zero = i >= static_cast<int64_t>(nonzero.size()) || !nonzero[i];
    if (i >= static_cast<int64_t>(bad.size()) || !bad[i]) continue;
    const double* y = ref + i * per;   // count only where the sample has some
    for (int64_t k = 0; k < per; ++k) {
      h.nan += std::isnan(y[k]);
      h.inf += std::isinf(y[k]);
    }
    h.nonfinite = h.nan + h.inf;
  }
  return s;
}

}  // namespace divscope
