// Internal to h5io: RAII handles for HDF5 ids and checked wrappers around the C API (after
// HighFive). Every failure becomes an InputError "<file>: <hdf5 path>: <what>"; HDF5's own
// error stack is never printed. Not part of the public API (hdf5.h stays out of h5io.h).
#pragma once
#include <hdf5.h>

#include <string>
#include <vector>

#include "errors.h"
#include "graph/model.h"
#include "graph/tensor.h"

namespace divscope::h5 {

// Silences HDF5's automatic error printing. The library is built thread-safe, where that
// setting is per thread, so every entry point calls this (cheap after the first call).
void init();

// The innermost message on HDF5's error stack (e.g. "truncated file: eof = 800, ..."), on one
// line, and clears the stack. Empty when the stack holds nothing.
std::string last_error();

// Owns one id; the destructor closes it and never throws (a close error is ignored: there is
// nobody to report it to, and the data path never depends on it).
template <herr_t (*Close)(hid_t)>
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : id_(id) {}
  Handle(Handle&& o) noexcept : id_(o.release()) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.release();
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }

  hid_t get() const { return id_; }
  hid_t release() {
    hid_t id = id_;
    id_ = H5I_INVALID_HID;
    return id;
  }
  void reset() noexcept {
    if (id_ >= 0) Close(id_);
    id_ = H5I_INVALID_HID;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
};

using FileId = Handle<H5Fclose>;
using ObjectId = Handle<H5Oclose>;    // groups and datasets
using AttrId = Handle<H5Aclose>;
using SpaceId = Handle<H5Sclose>;
using TypeId = Handle<H5Tclose>;
using PlistId = Handle<H5Pclose>;

// What a dataset or attribute holds, in the words an error message uses.
struct TypeInfo {
  H5T_class_t cls = H5T_NO_CLASS;
  size_t bytes = 0;
  bool is_signed = true;
  bool is_integer() const { return cls == H5T_INTEGER || cls == H5T_ENUM; }
  bool is_float() const { return cls == H5T_FLOAT; }
  std::string name() const;   // "float32", "int32", "uint8", "bool/enum", "string", "compound"
};

// A group or dataset plus the file name and path that error messages need. `context` (e.g.
// "layer 'fc1': ") is put in front of every message about it and its children.
class Object {
 public:
  Object(std::string file, std::string path, hid_t id, std::string context = "")
      : file_(std::move(file)), path_(std::move(path)), context_(std::move(context)), id_(id) {}
  // Closes under a Watch; never closes a damaged file's object (h5watch.h, Damaged files).
  ~Object();
  Object(Object&&) noexcept = default;
  Object& operator=(Object&&) noexcept = default;

  const std::string& file() const { return file_; }
  const std::string& path() const { return path_; }
  hid_t id() const { return id_.get(); }
  void set_context(std::string c) { context_ = std::move(c); }
  std::string child_path(const std::string& name) const;
  [[noreturn]] void fail(const std::string& what) const;
  [[noreturn]] void fail_at(const std::string& path, const std::string& what) const;

  // Members of a group.
  bool has(const std::string& name) const;            // false for a dangling or absent link
  Object open(const std::string& name) const;         // "missing object" when absent
  Object group(const std::string& name) const;        // ... and "expected a group"
  Object dataset(const std::string& name) const;      // ... and "expected a dataset"
  bool is_group() const;
  bool is_dataset() const;
  // Refuses a dataset whose data live outside the file: external storage, a virtual dataset, or
  // a filter that is not built into HDF5 (run by open() on every dataset).
  void check_storage() const;
  std::vector<std::string> members() const;           // ascending by name
  // Creation order where the group tracks it (write_model and DumpWriter do), else by name.
  std::vector<std::string> members_in_creation_order() const;

  // Attributes. The typed getters accept every integer width, fixed- or variable-length
  // strings, scalar or 1-D; they fail with a message naming the attribute.
  std::vector<std::string> attr_names() const;
  bool has_attr(const std::string& name) const;
  AttrValue attr(const std::string& name) const;
  std::string attr_string(const std::string& name) const;
  std::vector<std::string> attr_strings(const std::string& name) const;   // scalar -> {s}
  int64_t attr_int(const std::string& name) const;
  std::vector<int64_t> attr_ints(const std::string& name) const;          // scalar -> {v}

  // Datasets (metadata only, no data read). dims() fails when a dim or their product does not
  // fit in int64.
  Shape dims() const;
  TypeInfo type() const;
  // Refuses a dataset whose declared size its file cannot hold or this machine's memory cannot
  // take as float64 (docs/format.md, Sizes): run by the read_* functions before they allocate,
  // and by the recording reader on every dataset when it opens the file.
  void check_size() const;
  // Whole dataset converted by HDF5 to double / int64 (the caller checked the type class).
  Tensor read_f64() const;
  std::vector<int64_t> read_i64() const;

  // Writing (h5py's conventions: int64, float64, variable-length UTF-8 strings).
  Object create_group(const std::string& name) const;   // tracks creation order
  void remove(const std::string& name) const;          // unlinks a child, if it exists
  void write_attr(const std::string& name, const AttrValue& v) const;
  void write_dataset(const std::string& name, const Tensor& t) const;
  // A dataset of `shape` in file type `ftype`, written from `data` (numel(shape) elements of
  // memory type `mtype`). With `deflate` in 1..9 it is chunked (chunks of about 1 MiB, whole
  // trailing dims first) with the shuffle filter, then deflate at that level; with 0, or a
  // scalar or empty dataset, contiguous. Returns the dataset (e.g. to add attributes).
  Object write_raw_dataset(const std::string& name, const Shape& shape, hid_t ftype, hid_t mtype,
                           const void* data, int deflate) const;

 private:
  std::string file_, path_, context_;
  ObjectId id_;
};

class File {
 public:
  // Read-only. Missing file, directory, non-HDF5 or truncated file: InputError naming it. While
  // a MemoryImage named `path` lives, its bytes are read instead of the disk.
  static File open(const std::string& path);
  // Creates or truncates.
  static File create(const std::string& path);
  // The same, for a file of many small chunked datasets: `chunk_index_k` is HDF5's istore_k,
  // half the fan-out of the B-tree nodes that index a dataset's chunks (default 32, whose node
  // takes about 4 KiB per chunked dataset, more than a small dataset's data). Every HDF5
  // version reads the file.
  static File create(const std::string& path, unsigned chunk_index_k);
  // Read-write, for a file divscope wrote itself (a dump continued by run --resume).
  static File open_for_update(const std::string& path);
  // Writes every buffered change to the file (a dump's checkpoint after each batch).
  void flush() const;
  Object root() const;
  const std::string& name() const { return name_; }
  // The name messages give the file: a file written under a temporary name (io/atomic_file.h)
  // is named by its destination.
  void set_display_name(const std::string& n) { name_ = n; }
  // Closes under a Watch; never closes a damaged file (h5watch.h, Damaged files).
  ~File();
  File(File&&) noexcept = default;
  File& operator=(File&&) noexcept = default;

 private:
  File(std::string name, hid_t id) : name_(std::move(name)), id_(id) {}
  std::string name_;
  FileId id_;
};

// For the fuzzers (fuzz/, docs/testing.md): while it lives, File::open(name) opens `size` bytes
// at `data` through HDF5's core driver (a file image in memory, copied) instead of the file on
// disk, so that every reader runs on them unchanged, with the same checks (external links and
// storage refused, no filter plugins). One at a time; `data` must outlive the object.
class MemoryImage {
 public:
  MemoryImage(std::string name, const void* data, size_t size);
  ~MemoryImage();
  MemoryImage(const MemoryImage&) = delete;
  MemoryImage& operator=(const MemoryImage&) = delete;
};

// Checks root attrs divscope_format == `format` and 1 <= divscope_version <= max_version;
// returns the version.
int64_t check_header(const Object& root, const std::string& format, int64_t max_version = 1);

// "%0*zu": the zero-padded group names of layers (4) and batches (6).
std::string padded(size_t i, int width);

// ---- float datasets in their own precision (recordings' run_activations, dumps) --------------
// docs/format.md: float16 is IEEE binary16 (h5py's float16: a 2-byte HDF5 float, sign bit 15,
// exponent bits 10-14 with bias 15, mantissa bits 0-9); bfloat16 is a 16-bit integer dataset
// holding the bits, with the attribute dtype = "bfloat16" (numpy has no bfloat16).
enum class FloatDtype { float16, bfloat16, float32, float64 };
const char* dtype_name(FloatDtype t);   // "float16", "bfloat16", "float32", "float64"

// The dtype of a dataset as above; anything else (an integer without the attribute, an unknown
// dtype attribute, a 2-byte float that is not binary16, ...) fails naming the dataset.
FloatDtype float_dtype(const Object& d);

// The whole dataset, every element converted to double exactly: NaN (sign and payload), -0,
// subnormals and infinities kept. `t` is float_dtype(d).
Tensor read_exact_f64(const Object& d, FloatDtype t);

// h5py's IEEE binary16 (little-endian) as a new type id.
TypeId float16_type();

}  // namespace divscope::h5
