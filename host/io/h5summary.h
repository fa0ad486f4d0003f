// A recording's layout without a model, for `divscope inspect`.
#pragma once
#include <string>
#include <vector>

#include "graph/tensor.h"

namespace divscope {

struct RecordingSummary {
  struct Dataset {
    std::string name, dtype;
    Shape shape;
  };
  struct Batch {
    std::string name;
    std::vector<Dataset> datasets;   // inputs, then activations/<layer> and
                                     // run_activations/<layer> when present
  };
  std::string source, created;
  std::string capture_environment;   // v2: JSON text of the capturing machine, "" when absent
  std::vector<Batch> batches;
  int64_t total_samples = 0;
};

// Reads only metadata; errors are InputError naming the file and path.
RecordingSummary summarize_recording(const std::string& path);

}  // namespace divscope
