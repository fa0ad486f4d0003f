// Dump files (docs/format.md): /batches/NNNNNN/<mode>/<layer> float64, written by `run --dump` and
// compared across machines by `divscope diff`.
#include <cctype>
#include <cstdlib>

#include "io/h5io.h"
#include "io/h5wrap.h"

namespace divscope {

std::string dump_name(const std::string& layer) {
  std::string s = layer;
  for (char& c : s)
    if (c == '/') c = '|';
  return s;
}

// ---- DumpWriter ------------------------------------------------------------------------------

struct DumpWriter::Impl {
  h5::File file;
  h5::Object root;
  h5::Object batches;
};

DumpWriter::DumpWriter(const std::string& path, const std::string& environment_json) {
  h5::File f = h5::File::create(path);
  h5::Object root = f.root();
  root.write_attr("divscope_format", std::string("dump"));
  root.write_attr("divscope_version", int64_t{1});
  root.write_attr("environment", environment_json);
  h5::Object batches = root.create_group("batches");
  impl_.reset(new Impl{std::move(f), std::move(root), std::move(batches)});
}

DumpWriter::~DumpWriter() = default;
DumpWriter::DumpWriter(DumpWriter&&) noexcept = default;
DumpWriter& DumpWriter::operator=(DumpWriter&&) noexcept = default;

const std::string& DumpWriter::file() const { return impl_->file.name(); }

void DumpWriter::write(size_t batch, const std::string& mode, const std::string& layer,
                       const Tensor& t) {
  h5::init();
  const std::string bname = h5::padded(batch, 6);
  const h5::Object& batches = impl_->batches;
  h5::Object b = batches.has(bname) ? batches.group(bname) : batches.create_group(bname);
  h5::Object m = b.has(mode) ? b.group(mode) : b.create_group(mode);
  const std::string name = dump_name(layer);
  if (m.has(name)) m.fail_at(m.child_path(name), "layer '" + layer + "' written twice");
  m.write_dataset(name, t);
}

// ---- DumpReader ------------------------------------------------------------------------------

struct DumpReader::Impl {
  h5::File file;

  h5::Object batches() const {
    h5::init();   // this may be another thread than the one that opened the file
    return file.root().group("batches");
  }
  h5::Object mode(size_t batch, const std::string& mode) const {
    return batches().group(h5::padded(batch, 6)).group(mode);
  }
};

DumpReader::DumpReader(const std::string& path) : impl_(new Impl{h5::File::open(path)}) {
  h5::Object root = impl_->file.root();
  h5::check_header(root, "dump");
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
  h5::Object d = impl_->mode(batch, mode).dataset(dump_name(layer));
  h5::TypeInfo t = d.type();
  if (!t.is_float()) d.fail("dataset has dtype " + t.name() + ", expected float64");
  return d.read_f64();
}

}  // namespace divscope
