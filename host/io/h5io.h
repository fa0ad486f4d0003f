// HDF5 files of docs/format.md: model, recording, dump. Every reader validates as it reads and
// reports a malformed file as one InputError "<file>: <hdf5 path>: <what>" (exit 2); HDF5's
// own error stack is never printed. HDF5 types stay out of this header (the readers hold their
// handles behind a pointer). Not thread-safe: use each reader or writer from one thread.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "graph/model.h"
#include "graph/tensor.h"
#include "precision.h"

namespace divscope {

class AtomicPath;

// The newest model format this build reads (and writes when a model needs it): 1, or 2 with
// /constants, split layers with several outputs, input batch_axis and layer source
// (docs/format.md).
constexpr int64_t kModelFormatVersion = 2;
// Recordings: 2 adds the capturing environment and the source model's own activations
// (/batches/*/run_activations, read by RecordingReader::read_run_activation).
constexpr int64_t kRecordingFormatVersion = 2;

// The per-sample shapes (dims after the first) of the datasets of a recording's first batch, by
// name: what fixes the symbolic dims of an ONNX model (onnx_model.h). Reads metadata only.
std::map<std::string, Shape> recording_sample_shapes(const std::string& path);

// Reads and validates a model file: header, /inputs, /layers/NNNN (numbered 0000, 0001, ...
// in order), every layer's attributes and float32/float64 parameters, then
// validate_and_infer(). Sets Model::file = path and Layer::path = "/layers/NNNN".
Model read_model(const std::string& path);

// Writes `m` in the same format (h5py's conventions): parameters as float64 so that a round
// trip is exact, integers as int64, strings variable-length UTF-8, groups tracking creation
// order so that /inputs keeps the model's input order.
void write_model(const Model& m, const std::string& path);

// The root attribute divscope_format ("model" | "recording" | "dump"); InputError when the file
// is missing, not HDF5, truncated, or has no such attribute.
std::string file_format(const std::string& path);

// A recording, opened against the model it will be replayed through. The constructor checks
// the header and every batch's metadata (no data is read, so a recording larger than memory
// is fine): batch groups /batches/NNNNNN (six digits, at least one, taken in name order); per
// model input a dataset [N, per-sample shape...] with float32/float64 data for float32 inputs
// and any integer type for int64 inputs; the same N >= 1 across a batch's inputs; the members
// of activations/ and run_activations/ that are layers of the model: their shape and dtype.
// Other members of a batch group are ignored.
class RecordingReader {
 public:
  RecordingReader(const std::string& path, const Model& m);
  ~RecordingReader();
  RecordingReader(RecordingReader&&) noexcept;
  RecordingReader& operator=(RecordingReader&&) noexcept;

  const std::string& file() const;
  size_t num_batches() const;
  int64_t batch_size(size_t i) const;          // N of batch i
  std::string batch_name(size_t i) const;      // "000003"
  std::string source() const;                  // root attrs; "" when absent
  std::string created() const;

  // One FP64 tensor [N, per-sample shape...] per model input, in Model::inputs order. Integer
  // (int64) inputs are converted to double, exact below 2^53. Constants come from the model,
  // [1, shape...].
  std::vector<Tensor> read_batch(size_t i) const;

  // /batches/NNNNNN/activations/<layer>: the capturing framework's own output of a layer.
  bool has_activation(size_t i, const std::string& layer) const;
  // Checks the dataset is float and its shape equals `expected_full` ([N, ...]).
  Tensor read_activation(size_t i, const std::string& layer, const Shape& expected_full) const;

  // /batches/NNNNNN/run_activations/<layer> (format v2): the layer's output from the model as
  // the user ran it, in the run's own dtype. The dataset must have exactly `expected_full` as
  // its shape and be float16 (IEEE binary16), float32, float64, or a 16-bit integer dataset
  // with the attribute dtype = "bfloat16" holding bfloat16 bits; every value is converted to
  // double exactly (NaN and Inf kept). `dtype`, when given, receives "float16", "bfloat16",
  // "float32" or "float64". Anything else is an InputError naming the file and the dataset.
  // Members of run_activations that are layers of the model are checked (shape and dtype) when
  // the recording is opened.
  bool has_run_activation(size_t i, const std::string& layer) const;
  Tensor read_run_activation(size_t i, const std::string& layer, const Shape& expected_full,
                             std::string* dtype = nullptr) const;

  // Root attribute capture_environment (format v2): JSON text describing the capturing machine
  // (docs/format.md); "" when absent. Not parsed here.
  std::string capture_environment() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Dataset name of a layer in a dump: the layer name with each '/' replaced by '|' ('/' would
// otherwise make HDF5 groups; PyTorch names use '.', which HDF5 takes as is).
std::string dump_name(const std::string& layer);

// Dumps (docs/format.md, Dump). Version 1: every dataset float64, contiguous. Version 2: each
// dataset in its mode's storage precision (fp64 float64; fp32, tf32, strict float32; fp16 IEEE
// binary16; bf16 the int16 bits with attribute dtype = "bfloat16"), chunked, shuffled and
// deflated; root attributes say what the run was asked to dump. Readers take both.
constexpr int64_t kDumpFormatVersion = 2;
// The deflate level of version 2 (measured: bench/results/dump-size-2026-11-29.md).
constexpr int kDumpDeflateLevel = 1;

// The storage dtype of a mode's values in a version-2 dump: "float64", "float32", "float16" or
// "bfloat16".
const char* dump_dtype(Mode storage);

// What `run --dump-layers` / `--dump-batches` asked a dump to hold, as its root attributes
// record it (version 2): fnmatch-style globs on layer names (dump_layers) and the batches
// [begin, end) dumped, the asked range intersected with the replayed one (dump_batches). An
// absent part selects everything (a dump made without the flags, or of version 1).
struct DumpSelection {
  std::optional<std::vector<std::string>> layers;
  std::optional<std::pair<int64_t, int64_t>> batches;
  // Whether the dump was asked to hold this entry; `layer` is a layer or a dump name.
  bool selects(size_t batch, const std::string& layer) const;
  bool everything() const { return !layers && !batches; }
  std::string str() const;   // "layers conv*,fc; batches 1:3", or "everything"
};

struct DumpOptions {
  // 1: what divscope wrote before version 2 (float64, uncompressed; for old readers and the
  // compatibility tests); 2: the current format.
  int64_t version = kDumpFormatVersion;
  int deflate = kDumpDeflateLevel;   // version 2; 0: contiguous, uncompressed
  DumpSelection selection;           // recorded as root attributes (version 2)
};

// Writes /batches/NNNNNN/<mode>/<dump_name(layer)> [N, ...]; root attrs divscope_format "dump",
// divscope_version, environment (JSON text) and the selection. Groups track creation order so
// that a reader lists layers in the order they were written (topological).
class DumpWriter {
 public:
  // `continue_from` (run --resume): the interrupted run's partial dump, whose batches from
  // `next_batch` on (unfinished) are dropped and which is then written on.
  DumpWriter(const std::string& path, const std::string& environment_json,
             const DumpOptions& options = {}, const std::string& continue_from = "",
             int64_t next_batch = 0);
  ~DumpWriter();
  DumpWriter(DumpWriter&&) noexcept;
  DumpWriter& operator=(DumpWriter&&) noexcept;

  // Writing the same (batch, mode, layer) twice is an InputError. `storage` is the precision
  // the values are held in (version 2 stores them in dump_dtype(storage)): a value that is not
  // exactly representable in it is a bug of the caller, a std::logic_error (internal error),
  // never a silent rounding. The default, fp64, stores any double as it is.
  void write(size_t batch, const std::string& mode, const std::string& layer, const Tensor& t,
             Mode storage = Mode::fp64);
  void write(size_t batch, const std::string& mode, const std::string& layer, const TensorF& t,
             Mode storage);
  const std::string& file() const;   // the destination

  // The dump is written to a temporary file beside its destination (io/atomic_file.h): finish()
  // closes it and renames it into place, so a failed or killed run leaves the previous dump, or
  // none, never a half-written one. A writer destroyed without finish() finishes itself unless an
  // exception is unwinding the stack (then the temporary is removed).
  void finish();
  // After each finished batch: everything written so far is flushed to the file.
  void checkpoint();
  // A signal stops the run while `unfinished` is being written: that batch is dropped, the file
  // closed and kept (renamed to partial_path()) for run --resume; returns where it is ("" for a
  // destination that is not a regular file: nothing to keep).
  std::string suspend(size_t unfinished);
  // ".<name>.divscope-partial" beside the destination.
  static std::string partial_path(const std::string& dest);

 private:
  struct Impl;
  std::unique_ptr<AtomicPath> out_;
  int uncaught_ = 0;
  std::unique_ptr<Impl> impl_;
};

class DumpReader {
 public:
  explicit DumpReader(const std::string& path);   // checks the header (version 1 or 2)
  ~DumpReader();
  DumpReader(DumpReader&&) noexcept;
  DumpReader& operator=(DumpReader&&) noexcept;

  const std::string& file() const;
  int64_t version() const;
  std::string environment() const;
  const DumpSelection& selection() const;                        // from the root attributes
  std::vector<size_t> batches() const;                           // batch numbers, ascending
  std::vector<std::string> modes(size_t batch) const;            // in the order written
  std::vector<std::string> layers(size_t batch, const std::string& mode) const;  // dump names
  bool has(size_t batch, const std::string& mode, const std::string& layer) const;
  // The values as doubles, exactly as they were written, whatever the stored dtype.
  Tensor read(size_t batch, const std::string& mode, const std::string& layer) const;
  // The stored dtype: "float64", "float32", "float16" or "bfloat16".
  std::string dtype(size_t batch, const std::string& mode, const std::string& layer) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace divscope
