// `divscope inspect` and `divscope env`.
#include <iomanip>
#include <sstream>

#include <nlohmann/json.hpp>

#include "commands/cli.h"
#include "env.h"
#include "errors.h"
#include "io/h5io.h"
#include "io/h5summary.h"
#include "io/onnx_model.h"
#include "graph/model.h"

namespace divscope {
namespace {

std::string with_commas(int64_t n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(i, ",");
  return s;
}

std::string attr_str(const AttrValue& v) {
  std::ostringstream o;
  o << std::setprecision(6);
  std::visit(
      [&](const auto& x) {
        using X = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<X, std::string>) {
          o << '"' << x << '"';
        } else if constexpr (std::is_same_v<X, int64_t> || std::is_same_v<X, double>) {
          o << x;
        } else {
          o << '[';
          for (size_t i = 0; i < x.size(); ++i) o << (i ? "," : "") << x[i];
          o << ']';
        }
      },
      v);
  return o.str();
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

void print_table(std::ostream& out, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> w;
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      if (w.size() <= i) w.push_back(0);
      w[i] = std::max(w[i], r[i].size());
    }
  for (const auto& r : rows) {
    std::string line = " ";
    for (size_t i = 0; i < r.size(); ++i) {
      line += " " + r[i];
      if (i + 1 < r.size()) line += std::string(w[i] - r[i].size() + 1, ' ');
    }
    out << line << "\n";
  }
}

void inspect_model(const Model& m, std::ostream& out) {
  out << "model '" << m.name << "' (" << m.file << "): " << m.layers.size() << " layers, "
      << with_commas(m.parameter_count()) << " parameters\n";
  out << "inputs (per sample):\n";
  for (const GraphInput& gi : m.inputs)
    if (!gi.constant)
      out << "  " << gi.name << "  " << gi.dtype << "  " << shape_str(gi.shape)
          << (gi.batch_axis ? "  (batch axis " + std::to_string(gi.batch_axis) + " in the source model)" : "")
          << "\n";
  if (m.has_constants()) {
    out << "constants (the same for every sample):\n";
    for (const GraphInput& gi : m.inputs)
      if (gi.constant) out << "  " << gi.name << "  " << shape_str(gi.shape) << "\n";
  }
  out << "outputs: " << join(m.outputs, ", ") << "\n";
  if (!m.notes.empty()) out << (m.format == "onnx" ? "import: " : "capture: ") << m.notes << "\n";
  out << "\nlayers:\n";
  std::vector<std::vector<std::string>> rows{
      {"#", "name", "op", "inputs", "output (per sample)", "params", "attributes", "source"}};
  for (const Layer& l : m.layers) {
    int64_t np = 0;
    std::vector<std::string> ps;
    for (const auto& kv : l.params) {
      np += kv.second.size();
      ps.push_back(kv.first + shape_str(kv.second.shape));
    }
    std::vector<std::string> as;
    for (const auto& kv : l.attrs) as.push_back(kv.first + "=" + attr_str(kv.second));
    rows.push_back({std::to_string(l.index), l.name, l.op, join(l.inputs, ","),
                    shape_str(l.out_shape), np ? with_commas(np) + " " + join(ps, " ") : "-",
                    join(as, " "), l.value.name.empty() ? l.source : l.source + ", value " + l.value.name});
  }
  print_table(out, rows);
}

void inspect_recording(const std::string& file, const std::string& model_file, std::ostream& out) {
  RecordingSummary s = summarize_recording(file);
  out << "recording (" << file << "): " << s.batches.size() << " batches, " << s.total_samples
      << " samples\n";
  out << "source: " << s.source << "\ncreated: " << s.created << "\n";
  if (!s.capture_environment.empty()) {
    const nlohmann::json env = nlohmann::json::parse(s.capture_environment, nullptr, false);
    if (env.is_object())
      out << "captured on: " << env_machine(env) << "\ncaptured with: " << env_software_line(env) << "\n";
    else
      out << "captured with: (capture_environment is not a JSON object)\n";
  }
  out << "\n";
  std::vector<std::vector<std::string>> rows{{"batch", "dataset", "dtype", "shape"}};
  for (const auto& b : s.batches)
    for (const auto& d : b.datasets) rows.push_back({b.name, d.name, d.dtype, shape_str(d.shape)});
  print_table(out, rows);
  if (!model_file.empty()) {
    Model m = load_model(model_file, file);
    RecordingReader r(file, m);
    out << "\nvalid for model '" << m.name << "' (" << model_file << ")\n";
  }
}

}  // namespace

int run_inspect(const InspectArgs& a, std::ostream& out) {
  if (looks_like_onnx(a.file)) {
    inspect_model(load_model(a.file, a.recording), out);
    return kExitOk;
  }
  std::string fmt = file_format(a.file);
  if (fmt == "model") {
    inspect_model(read_model(a.file), out);
  } else if (fmt == "recording") {
    inspect_recording(a.file, a.model, out);
  } else {
    throw InputError(a.file, "/", "inspect shows models and recordings, this is a '" + fmt + "' file");
  }
  return kExitOk;
}

int run_env(std::ostream& out, std::ostream& err) {
  nlohmann::json j = environment_json();
  out << j.dump(2) << "\n";
  if (!env_cuda_available(j)) err << "divscope: no CUDA device: " << env_cuda_reason(j) << "\n";
  return kExitOk;
}

}  // namespace divscope
