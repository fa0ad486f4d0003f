#include "io/h5summary.h"

#include "io/h5wrap.h"

namespace divscope {

RecordingSummary summarize_recording(const std::string& path) {
  h5::File f = h5::File::open(path);
  h5::Object root = f.root();
  if (root.attr_string("divscope_format") != "recording")
    root.fail_at("/", "divscope_format is '" + root.attr_string("divscope_format") +
                          "', expected 'recording'");
  RecordingSummary s;
  if (root.has_attr("source")) s.source = root.attr_string("source");
  if (root.has_attr("created")) s.created = root.attr_string("created");
  if (root.has_attr("capture_environment"))
    s.capture_environment = root.attr_string("capture_environment");
  h5::Object batches = root.group("batches");
  for (const std::string& b : batches.members()) {
    h5::Object g = batches.group(b);
    RecordingSummary::Batch out{b, {}};
    int64_t n = 0;
    for (const std::string& d : g.members()) {
      h5::Object o = g.open(d);
      if (o.is_dataset()) {
        out.datasets.push_back({d, o.type().name(), o.dims()});
        if (!out.datasets.back().shape.empty()) n = out.datasets.back().shape[0];
      } else if (d == "activations" || d == "run_activations") {
        for (const std::string& a : o.members()) {
          h5::Object ds = o.dataset(a);
          // bfloat16 has no HDF5 type: capture stores its bits as int16 and says so
          std::string dtype = ds.type().name();
          if (ds.has_attr("dtype")) dtype = ds.attr_string("dtype");
          out.datasets.push_back({d + "/" + a, dtype, ds.dims()});
        }
      }
    }
    s.total_samples += n;
    s.batches.push_back(std::move(out));
  }
  return s;
}

}  // namespace divscope
