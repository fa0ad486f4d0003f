#include "analysis/reference_check.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace divscope {
namespace {

constexpr double kU = 0x1p-53;
constexpr double kDenormMin = 0x1p-1074;

bool same_bits_or_nans(double a, double b) {
  uint64_t ua, ub;
  std::memcpy(&ua, &a, sizeof ua);
  std::memcpy(&ub, &b, sizeof ub);
  return ua == ub || (std::isnan(a) && std::isnan(b));
}

// T_i of reference_check.h for the ops that call libm (bitwise ops never get here).
std::vector<double> term_magnitude(const Layer& l, const std::vector<const Tensor*>& in,
                                   const Tensor& cpu) {
  const int64_t n = cpu.size();
  std::vector<double> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[i] = std::fabs(cpu.data[i]);
  if (l.op == "gelu") {
    for (int64_t i = 0; i < n; ++i) t[i] += std::fabs(in[0]->data[i]);
  } else if (l.op == "log_softmax") {
    const Shape& s = cpu.shape;
    int64_t axis = l.attr_int("axis");
    if (axis < 0) axis += static_cast<int64_t>(s.size());
    int64_t outer = 1, len = 1, inner = 1;
    for (int64_t d = 0; d < static_cast<int64_t>(s.size()); ++d)
      (d < axis ? outer : d == axis ? len : inner) *= s[d];
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t k = 0; k < inner; ++k) {
        const int64_t base = o * len * inner + k;
        double top = -HUGE_VAL;   // the line's largest output is -log s
        for (int64_t j = 0; j < len; ++j) {
          const double v = cpu.data[base + j * inner];
          if (std::isfinite(v)) top = std::max(top, v);
        }
        const double log_s = std::isfinite(top) ? std::fabs(top) : 0.0;
        for (int64_t j = 0; j < len; ++j) t[base + j * inner] += log_s + 1.0;
      }
  } else if (l.op == "scaled_dot_product_attention") {
    const Tensor& v = *in[2];   // [..., Tk, Dv]; the output is [..., Tq, Dv], same leading dims
    const int64_t Dv = v.shape.back(), Tk = v.shape[v.shape.size() - 2];
    const int64_t Tq = cpu.shape[cpu.shape.size() - 2], heads = v.size() / (Tk * Dv);
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t d = 0; d < Dv; ++d) {
        double m = 0;
        for (int64_t j = 0; j < Tk; ++j) m = std::max(m, std::fabs(v.data[(h * Tk + j) * Dv + d]));
        for (int64_t i = 0; i < Tq; ++i) t[(h * Tq + i) * Dv + d] = m;
      }
  }
  return t;
}

}  // namespace

bool fp64_device_bitwise(const std::string& op) {
  static const char* const libm[] = {"gelu", "silu", "sigmoid", "tanh", "exp", "log", "erf",
                                     "pow", "softmax", "log_softmax",
                                     "scaled_dot_product_attention"};
  for (const char* o : libm)
    if (op == o) return false;
  return true;
}

ReferenceAgreement compare_device_reference(const Layer& l, const std::vector<const Tensor*>& in,
                                            const Tensor& cpu, const Tensor& device) {
  ReferenceAgreement a;
  a.bitwise = fp64_device_bitwise(l.op);
  if (device.shape != cpu.shape || device.size() != cpu.size()) {
    a.count = cpu.size();
    a.beyond = std::max<int64_t>(1, cpu.size());
    a.first = 0;
    a.bound = -1;   // describe() names the shape mismatch
    return a;
  }
  a.count = cpu.size();
  if (a.bitwise) {
    for (int64_t i = 0; i < cpu.size(); ++i) {
      if (same_bits_or_nans(cpu.data[i], device.data[i])) continue;
      if (a.beyond++ == 0) {
        a.first = i;
        a.cpu = cpu.data[i];
        a.device = device.data[i];
      }
    }
    return a;
  }
  const std::vector<double> t = term_magnitude(l, in, cpu);
  double worst = -1;
  for (int64_t i = 0; i < cpu.size(); ++i) {
    const double c = cpu.data[i], d = device.data[i];
    bool ok;
    double bound = 0, ratio;
    if (!std::isfinite(c) || !std::isfinite(d)) {
      ok = same_bits_or_nans(c, d) || (c == d);
      ratio = ok ? 0 : HUGE_VAL;
    } else {
      bound = kFp64LibmUlps * kU * t[i] + kFp64LibmUlps * kDenormMin;
      const double err = std::fabs(d - c);
      ok = !(err > bound);   // an infinite bound (T_i infinite) passes any finite pair
      ratio = err / bound;
    }
    if (ok) continue;
    ++a.beyond;
    if (ratio > worst) {
      worst = ratio;
      a.first = i;
      a.cpu = c;
      a.device = d;
      a.bound = bound;
    }
  }
  return a;
}

std::string ReferenceAgreement::describe() const {
  char buf[400];
  if (bound < 0) return "output shapes differ";
  if (bitwise)
    std::snprintf(buf, sizeof buf,
                  "%lld of %lld elements differ in their bits (an op without libm functions must "
                  "match exactly); first at flat index %lld: CPU %.17g, device %.17g",
                  static_cast<long long>(beyond), static_cast<long long>(count),
                  static_cast<long long>(first), cpu, device);
  else
    std::snprintf(buf, sizeof buf,
                  "%lld of %lld elements beyond the libm bound (%g u times the terms' magnitude); "
                  "worst at flat index %lld: CPU %.17g, device %.17g, |difference| %.3g > bound %.3g",
                  static_cast<long long>(beyond), static_cast<long long>(count), kFp64LibmUlps,
                  static_cast<long long>(first), cpu, device, std::fabs(device - cpu), bound);
  return buf;
}

}  // namespace divscope
