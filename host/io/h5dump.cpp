// Dump files (docs/format.md, Dump): /batches/NNNNNN/<mode>/<layer>, written by `run --dump` and
// compared across machines by `divscope diff`. Version 2 stores each mode's values in its own
// storage precision (checked exact), compressed; version 1 (float64, uncompressed) is still read.
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fnmatch.h>
#include <stdexcept>
#include <type_traits>

#include "io/h5io.h"

#include <cstdio>
#include <exception>

#include "io/atomic_file.h"
#include "io/h5watch.h"
#include "io/h5wrap.h"

namespace divscope {
namespace {

h5::FloatDtype storage_dtype(Mode m) {
  switch (m) {
    case Mode::fp64: return h5::FloatDtype::float64;
    case Mode::fp16: return h5::FloatDtype::float16;
    case Mode::bf16: return h5::FloatDtype::bfloat16;
    default: return h5::FloatDtype::float32;   // fp32, tf32 (a compute format), strict
  }
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : ",") + x;
  return s;
}

std::string dataset_path(size_t batch, const std::string& mode, const std::string& name) {
  return "/batches/" + h5::padded(batch, 6) + "/" + mode + "/" + name;
}

// A value the storage dtype does not hold exactly: the caller's values are not what its mode
// says they are, a bug of divscope (exit 3, "internal error"), never a silent rounding.
[[noreturn]] void not_exact(const std::string& file, const std::string& path, Mode storage,
                            int64_t i, double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  throw std::logic_error(file + ": " + path + ": element " + std::to_string(i) + " = " + buf +
                         " is not exactly a " + dump_dtype(storage) + " although mode " +
                         mode_name(storage) + " holds its values in " + dump_dtype(storage) +
                         " (the dump would not be exact)");
}

// The values in the storage dtype, each checked to convert back to the very same bits.
// `T` is double (a Tensor) or float (a TensorF).
template <class T>
std::vector<float> to_f32(const BasicTensor<T>& t, const std::string& file, const std::string& path) {
  std::vector<float> out(static_cast<size_t>(t.size()));
  for (int64_t i = 0; i < t.size(); ++i) {
    out[i] = static_cast<float>(t.data[i]);
    if constexpr (std::is_same_v<T, double>)
      if (f64_bits(static_cast<double>(out[i])) != f64_bits(t.data[i]))
        not_exact(file, path, Mode::fp32, i, t.data[i]);
  }
  return out;
}

template <class T>
std::vector<uint16_t> to_bits16(const BasicTensor<T>& t, Mode storage, const std::string& file,
                                const std::string& path) {
  const bool half = storage == Mode::fp16;
  std::vector<uint16_t> out(static_cast<size_t>(t.size()));
  for (int64_t i = 0; i < t.size(); ++i) {
    const float f = static_cast<float>(t.data[i]);
    const uint16_t b = half ? float_to_half_bits(f) : float_to_bf16_bits(f);
    const float back = half ? half_bits_to_float(b) : bf16_bits_to_float(b);
    if (f64_bits(static_cast<double>(back)) != f64_bits(static_cast<double>(t.data[i])))
      not_exact(file, path, storage, i, static_cast<double>(t.data[i]));
    out[i] = b;
  }
  return out;
}

}  // namespace

std::string dump_name(const std::string& layer) {
  std::string s = layer;
  for (char& c : s)
    if (c == '/') c = '|';
  return s;
}

const char* dump_dtype(Mode storage) { return h5::dtype_name(storage_dtype(storage)); }

bool DumpSelection::selects(size_t batch, const std::string& layer) const {
  if (batches && !(static_cast<int64_t>(batch) >= batches->first &&
                   static_cast<int64_t>(batch) < batches->second))
    return false;
  if (!layers) return true;
  const std::string name = dump_name(layer);
  for (const std::string& g : *layers)   // a glob on layer names, matched against dump names
    if (fnmatch(dump_name(g).c_str(), name.c_str(), 0) == 0) return true;
  return false;
}

std::string DumpSelection::str() const {
  std::string s;
  if (layers) s = "layers " + join(*layers);
  if (batches)
    s += (s.empty() ? "" : "; ") + std::string("batches ") + std::to_string(batches->first) + ":" +
         std::to_string(batches->second);
  return s.empty() ? "everything" : s;
}

// ---- DumpWriter ------------------------------------------------------------------------------

struct DumpWriter::Impl {
  h5::File file;
  h5::Object root;
  h5::Object batches;
  DumpOptions options;

  // The group of (batch, mode), made when first needed, and the dataset name, checked unused.
  std::pair<h5::Object, std::string> place(size_t batch, const std::string& mode,
                                           const std::string& layer) const {
    h5::init();
    const std::string bname = h5::padded(batch, 6);
    h5::Object b = batches.has(bname) ? batches.group(bname) : batches.create_group(bname);
    h5::Object m = b.has(mode) ? b.group(mode) : b.create_group(mode);
    const std::string name = dump_name(layer);
    if (m.has(name)) m.fail_at(m.child_path(name), "layer '" + layer + "' written twice");
    return {std::move(m), name};
  }
  template <class T>
  void write(size_t batch, const std::string& mode, const std::string& layer,
             const BasicTensor<T>& t, Mode storage) const;
};

DumpWriter::DumpWriter(const std::string& path, const std::string& environment_json,
                       const DumpOptions& options, const std::string& continue_from, int64_t next_batch) {
  if (options.version != 1 && options.version != kDumpFormatVersion)
    throw std::logic_error("DumpWriter: unknown dump version " + std::to_string(options.version));
  if (!continue_from.empty()) {
    out_ = std::make_unique<AtomicPath>(path, continue_from);
    uncaught_ = std::uncaught_exceptions();
    h5::File f = h5::File::open_for_update(continue_from);
    h5::Object root = f.root();
    check_header(root, "dump", kDumpFormatVersion);
    h5::Object batches = root.group("batches");
    // Batches the interrupted run had begun but not finished (killed between checkpoints).
    const std::string first_dropped = h5::padded(static_cast<size_t>(next_batch), 6);
    for (const std::string& b : batches.members())
      if (b >= first_dropped) batches.remove(b);
    f.set_display_name(path);
    impl_.reset(new Impl{std::move(f), std::move(root), std::move(batches), options});
    return;
  }
  // Version 2: one B-tree node of 4 entries per dataset's chunk index, not HDF5's default of
  // 64 (4 KiB per dataset, twice the data of a small layer).
  out_ = std::make_unique<AtomicPath>(path);
  uncaught_ = std::uncaught_exceptions();
  const std::string& where = out_->temp();
  h5::File f = options.version == 1 ? h5::File::create(where) : h5::File::create(where, 2);
  f.set_display_name(path);
  h5::Object root = f.root();
  root.write_attr("divscope_format", std::string("dump"));
  root.write_attr("divscope_version", options.version);
  root.write_attr("environment", environment_json);
  if (options.version >= 2) {
    const DumpSelection& s = options.selection;
    if (s.layers) root.write_attr("dump_layers", *s.layers);
    if (s.batches) root.write_attr("dump_batches", std::vector<int64_t>{s.batches->first, s.batches->second});
  }
  h5::Object batches = root.create_group("batches");
  impl_.reset(new Impl{std::move(f), std::move(root), std::move(batches), options});
}

DumpWriter::~DumpWriter() {
  if (!out_ || !impl_) return;   // finished, or moved from
  if (std::uncaught_exceptions() > uncaught_) return;   // unwinding: out_ removes the temporary
  try {
    finish();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "divscope: %s\n", e.what());
  }
}

void DumpWriter::checkpoint() {
  if (impl_) impl_->file.flush();
}

std::string DumpWriter::partial_path(const std::string& dest) {
  const std::filesystem::path p(dest);
  const std::filesystem::path dir = p.has_parent_path() ? p.parent_path() : std::filesystem::path(".");
  return (dir / ("." + p.filename().string() + ".divscope-partial")).string();
}

std::string DumpWriter::suspend(size_t unfinished) {
  if (!impl_) return "";
  impl_->batches.remove(h5::padded(unfinished, 6));
  impl_.reset();   // closes the file
  if (out_->temp() == out_->dest()) return "";
  return out_->keep(partial_path(out_->dest()));
}

void DumpWriter::finish() {
  if (!impl_) return;
  impl_.reset();   // closes every HDF5 handle of the file
  out_->commit();
}
DumpWriter::DumpWriter(DumpWriter&&) noexcept = default;
DumpWriter& DumpWriter::operator=(DumpWriter&&) noexcept = default;

const std::string& DumpWriter::file() const { return out_->dest(); }

template <class T>
void DumpWriter::Impl::write(size_t batch, const std::string& mode, const std::string& layer,
                             const BasicTensor<T>& t, Mode storage) const {
  auto [m, name] = place(batch, mode, layer);
  h5::Watch watch(m.file(), m.path());
  const std::string path = dataset_path(batch, mode, name);
  const int level = options.deflate;
  if (options.version == 1 || storage == Mode::fp64) {
    Tensor d;
    const Tensor* p = nullptr;
    if constexpr (std::is_same_v<T, double>) {
      p = &t;
    } else {
      d = Tensor(t.shape);
      for (int64_t i = 0; i < t.size(); ++i) d.data[i] = t.data[i];
      p = &d;
    }
    if (options.version == 1) m.write_dataset(name, *p);   // contiguous float64
    else m.write_raw_dataset(name, t.shape, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, p->ptr(), level);
    return;
  }
  if (storage_dtype(storage) == h5::FloatDtype::float32) {
    if constexpr (std::is_same_v<T, float>) {
      m.write_raw_dataset(name, t.shape, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, t.ptr(), level);
    } else {
      const std::vector<float> v = to_f32(t, file.name(), path);
      m.write_raw_dataset(name, t.shape, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, v.data(), level);
    }
    return;
  }
  const std::vector<uint16_t> v = to_bits16(t, storage, file.name(), path);
  if (storage == Mode::fp16) {
    const h5::TypeId ft = h5::float16_type();
    h5::TypeId mt(H5Tcopy(ft.get()));   // the same bits in this machine's byte order
    if (mt.get() < 0 || H5Tset_order(mt.get(), H5Tget_order(H5T_NATIVE_UINT16)) < 0)
      m.fail_at(path, "cannot make the float16 memory type (" + h5::last_error() + ")");
    m.write_raw_dataset(name, t.shape, ft.get(), mt.get(), v.data(), level);
  } else {
    m.write_raw_dataset(name, t.shape, H5T_STD_I16LE, H5T_NATIVE_INT16, v.data(), level)
        .write_attr("dtype", std::string("bfloat16"));
  }
}

void DumpWriter::write(size_t batch, const std::string& mode, const std::string& layer,
                       const Tensor& t, Mode storage) {
  impl_->write(batch, mode, layer, t, storage);
}

void DumpWriter::write(size_t batch, const std::string& mode, const std::string& layer,
                       const TensorF& t, Mode storage) {
  impl_->write(batch, mode, layer, t, storage);
}

// ---- DumpReader ------------------------------------------------------------------------------

struct DumpReader::Impl {
  h5::File file;
  int64_t version = 1;
  DumpSelection selection;

  h5::Object batches() const {
    h5::init();   // this may be another thread than the one that opened the file
    return file.root().group("batches");
  }
  h5::Object mode(size_t batch, const std::string& mode) const {
    return batches().group(h5::padded(batch, 6)).group(mode);
  }
  h5::Object dataset(size_t batch, const std::string& m, const std::string& layer) const {
    h5::Object d = mode(batch, m).dataset(dump_name(layer));
    if (version == 1 && !d.type().is_float())
      d.fail("dataset has dtype " + d.type().name() + ", expected float64");
    return d;
  }
};

DumpReader::DumpReader(const std::string& path) : impl_(new Impl{h5::File::open(path), 1, {}}) {
  h5::Object root = impl_->file.root();
  impl_->version = h5::check_header(root, "dump", kDumpFormatVersion);
  if (impl_->version >= 2) {
    DumpSelection& s = impl_->selection;
    if (root.has_attr("dump_layers")) s.layers = root.attr_strings("dump_layers");
    if (root.has_attr("dump_batches")) {
      const std::vector<int64_t> b = root.attr_ints("dump_batches");
      if (b.size() != 2 || b[0] < 0 || b[0] >= b[1])
        root.fail("attribute 'dump_batches' must be [begin, end) with 0 <= begin < end");
      s.batches = std::make_pair(b[0], b[1]);
    }
  }
  h5::Object batches = root.group("batches");
  for (const std::string& name : batches.members()) {
    bool digits = name.size() == 6;
    for (char c : name) digits &= std::isdigit(static_cast<unsigned char>(c)) != 0;
    if (!digits)
      batches.fail_at(batches.child_path(name),
                      "batch groups must be named with six digits (000000, 000001, ...)");
  }
}

DumpReader::~DumpReader() = default;
DumpReader::DumpReader(DumpReader&&) noexcept = default;
DumpReader& DumpReader::operator=(DumpReader&&) noexcept = default;

const std::string& DumpReader::file() const { return impl_->file.name(); }
int64_t DumpReader::version() const { return impl_->version; }
const DumpSelection& DumpReader::selection() const { return impl_->selection; }

std::string DumpReader::environment() const {
  h5::init();
  h5::Object root = impl_->file.root();
  return root.has_attr("environment") ? root.attr_string("environment") : std::string();
}

std::vector<size_t> DumpReader::batches() const {
  std::vector<size_t> out;
  for (const std::string& name : impl_->batches().members())
    out.push_back(static_cast<size_t>(std::strtoull(name.c_str(), nullptr, 10)));
  return out;
}

std::vector<std::string> DumpReader::modes(size_t batch) const {
  return impl_->batches().group(h5::padded(batch, 6)).members_in_creation_order();
}

std::vector<std::string> DumpReader::layers(size_t batch, const std::string& mode) const {
  return impl_->mode(batch, mode).members_in_creation_order();
}

bool DumpReader::has(size_t batch, const std::string& mode, const std::string& layer) const {
  h5::Object b = impl_->batches();
  std::string p = h5::padded(batch, 6) + "/" + mode + "/" + dump_name(layer);
  return b.has(p) && b.open(p).is_dataset();
}

Tensor DumpReader::read(size_t batch, const std::string& mode, const std::string& layer) const {
  const h5::Object d = impl_->dataset(batch, mode, layer);
  return h5::read_exact_f64(d, h5::float_dtype(d));
}

std::string DumpReader::dtype(size_t batch, const std::string& mode, const std::string& layer) const {
  return h5::dtype_name(h5::float_dtype(impl_->dataset(batch, mode, layer)));
}

}  // namespace divscope
