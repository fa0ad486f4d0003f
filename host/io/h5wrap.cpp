#include "io/h5wrap.h"

#include <H5PLpublic.h>
#include "io/h5watch.h"
#include "precision.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <mutex>
#include <system_error>
#include <type_traits>

namespace divscope::h5 {
namespace {

herr_t walk_cb(unsigned, const H5E_error2_t* e, void* data) {
  // Walking downward (API call first), so the last description is the innermost one.
  if (e->desc && *e->desc) *static_cast<std::string*>(data) = e->desc;
  return 0;
}

// libhdf5's reason for a failed call; the file being read is then damaged (h5watch.h).
std::string with_reason() {
  std::string r = last_error();
  if (r.empty()) return "";
  note_damage();
  return " (" + r + ")";
}

// libhdf5 shuts itself down at exit (atexit) unless told not to before it starts. divscope does
// it here instead: inside a Watch, so that a crash there is one line, and not at all after a
// damaged file (h5watch.h, Damaged files). Registered before main, before any HDF5 call.
void shutdown_library() {
  if (skip_library_shutdown()) return;
  const std::string file = last_watched_file();
  if (file.empty()) return;   // libhdf5 never started
  Watch watch(file, "(closing the HDF5 library at exit)");
  H5close();
}
const bool kShutdownRegistered = [] {
  H5dont_atexit();
  return std::atexit(shutdown_library) == 0;
}();

// The file's size in bytes: what it can hold, for the declared sizes of its datasets and
// attributes (docs/format.md, Sizes).
int64_t file_bytes(const Object& o) {
  FileId f(H5Iget_file_id(o.id()));
  hsize_t n = 0;
  if (f.get() < 0 || H5Fget_filesize(f.get(), &n) < 0) o.fail("cannot read the file's size" + with_reason());
  return n > static_cast<hsize_t>(std::numeric_limits<int64_t>::max()) ? std::numeric_limits<int64_t>::max()
                                                                      : static_cast<int64_t>(n);
}

// At most this many bytes of data per byte of a deflate stream: a long run of one byte costs
// about 2 bits per 258-byte match, so zlib's ratio tops out near 1032:1 (zlib's technical notes).
constexpr int64_t kMaxDeflateRatio = 1032;

herr_t collect_link(hid_t, const char* name, const H5L_info_t*, void* data) {
  static_cast<std::vector<std::string>*>(data)->push_back(name);
  return 0;
}

herr_t collect_attr(hid_t, const char* name, const H5A_info_t*, void* data) {
  static_cast<std::vector<std::string>*>(data)->push_back(name);
  return 0;
}

std::string kind_name(const AttrValue& v) {
  static const char* kNames[] = {"an integer", "a float", "a string",
                                 "an integer array", "a float array", "a string array"};
  return kNames[v.index()];
}

// Reads `n` strings of any HDF5 string form: variable- or fixed-length, ASCII or UTF-8.
std::vector<std::string> read_strings(const Object& o, const std::string& what, hid_t attr,
                                      hid_t ftype, hid_t space, size_t n) {
  std::vector<std::string> out;
  if (n == 0) return out;
  TypeId mem(H5Tcopy(H5T_C_S1));
  H5Tset_cset(mem.get(), H5Tget_cset(ftype));
  if (H5Tis_variable_str(ftype) > 0) {
    H5Tset_size(mem.get(), H5T_VARIABLE);
    std::vector<char*> buf(n, nullptr);
    if (H5Aread(attr, mem.get(), buf.data()) < 0) o.fail("cannot read " + what + with_reason());
    for (char* s : buf) out.emplace_back(s ? s : "");
    H5Dvlen_reclaim(mem.get(), space, H5P_DEFAULT, buf.data());
    return out;
  }
  size_t size = H5Tget_size(ftype);
  H5T_str_t pad = H5Tget_strpad(ftype);
  H5Tset_size(mem.get(), size);
  H5Tset_strpad(mem.get(), pad);
  std::vector<char> buf(n * size);
  if (H5Aread(attr, mem.get(), buf.data()) < 0) o.fail("cannot read " + what + with_reason());
  for (size_t i = 0; i < n; ++i) {
    const char* p = buf.data() + i * size;
    size_t len = 0;
    while (len < size && p[len] != '\0') ++len;
    if (pad == H5T_STR_SPACEPAD)
      while (len > 0 && p[len - 1] == ' ') --len;
    out.emplace_back(p, len);
  }
  return out;
}

hid_t file_type_of(const AttrValue& v) {
  switch (v.index()) {
    case 0: case 3: return H5T_STD_I64LE;
    case 1: case 4: return H5T_IEEE_F64LE;
    default: return H5I_INVALID_HID;   // strings: built per call
  }
}

// Chunk dims for a dataset of `dims` with `elem`-byte elements: the whole dataset when it fits in
// `target` bytes, else the leading dims cut down (trailing dims kept whole as long as they fit),
// so that a chunk is a contiguous run of the data of about `target` bytes.
std::vector<hsize_t> chunk_dims(const std::vector<hsize_t>& dims, size_t elem, double target) {
  std::vector<hsize_t> c = dims;
  double bytes = static_cast<double>(elem);
  for (hsize_t x : c) bytes *= static_cast<double>(x);
  for (size_t i = 0; i < c.size() && bytes > target; ++i) {
    const double slice = bytes / static_cast<double>(c[i]);   // bytes of one index along dim i
    c[i] = std::max<hsize_t>(1, static_cast<hsize_t>(target / slice));
    bytes = slice * static_cast<double>(c[i]);
  }
  return c;
}

// The raw 16 bits of every element of a 2-byte dataset (float16, or the integer of a
// bfloat16), in the machine's byte order.
std::vector<uint16_t> read_bits16(const Object& d, bool is_float) {
  Watch watch(d.file(), d.path());
  d.check_size();
  std::vector<uint16_t> v(numel(d.dims()));
  if (v.empty()) return v;
  TypeId mem;
  if (is_float) {
    TypeId ft(H5Dget_type(d.id()));
    if (ft.get() >= 0) mem = TypeId(H5Tcopy(ft.get()));
    if (mem.get() < 0 || H5Tset_order(mem.get(), H5Tget_order(H5T_NATIVE_UINT16)) < 0)
      d.fail("cannot read dataset (" + last_error() + ")");
  } else {
    mem = TypeId(H5Tcopy(d.type().is_signed ? H5T_NATIVE_INT16 : H5T_NATIVE_UINT16));
  }
  if (H5Dread(d.id(), mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) < 0)
    d.fail("cannot read dataset (" + last_error() + ")");
  return v;
}

}  // namespace

// Link access that refuses to follow external links (a link to an object in another file):
// divscope reads only the files it is given (docs/format.md, Common rules).
herr_t deny_external_link(const char*, const char*, const char*, const char*, unsigned*, hid_t, void*) {
  return -1;
}
hid_t no_elinks() {
  static hid_t lapl = [] {
    hid_t l = H5Pcreate(H5P_LINK_ACCESS);
    if (l >= 0) H5Pset_elink_cb(l, deny_external_link, nullptr);
    return l;
  }();
  return lapl;
}

void init() {
  static std::once_flag once;
  std::call_once(once, [] {
    H5open();
    // No filter plugins: a dataset naming an unknown filter must not make HDF5 load a shared
    // library from HDF5_PLUGIN_PATH (code from outside the files named).
    H5PLset_loading_state(0);
    no_elinks();
  });
  thread_local bool silenced = false;
  if (!silenced) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    silenced = true;
  }
}

std::string last_error() {
  std::string s;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_cb, &s);
  H5Eclear2(H5E_DEFAULT);
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

std::string padded(size_t i, int width) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%0*zu", width, i);
  return buf;
}

std::string TypeInfo::name() const {
  std::string bits = std::to_string(bytes * 8);
  switch (cls) {
    case H5T_FLOAT: return "float" + bits;
    case H5T_INTEGER: return (is_signed ? "int" : "uint") + bits;
    case H5T_ENUM: return "enum (bool?)";
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    case H5T_ARRAY: return "array";
    case H5T_VLEN: return "vlen";
    case H5T_OPAQUE: return "opaque";
    case H5T_REFERENCE: return "reference";
    case H5T_BITFIELD: return "bitfield";
    default: return "unknown";
  }
}

// ---- File ------------------------------------------------------------------------------------

File::~File() {
  if (id_.get() < 0) return;
  if (keep_damaged_open(name_)) {
    id_.release();
    return;
  }
  Watch watch(name_, "/");
  id_.reset();
}

namespace {
struct Image {
  std::string name;
  const void* data = nullptr;
  size_t size = 0;
};
Image* memory_image = nullptr;   // the live MemoryImage, if any
}  // namespace

MemoryImage::MemoryImage(std::string name, const void* data, size_t size) {
  if (memory_image) throw std::logic_error("h5::MemoryImage: one at a time");
  memory_image = new Image{std::move(name), data, size};
}

MemoryImage::~MemoryImage() {
  delete memory_image;
  memory_image = nullptr;
}

File File::open(const std::string& path) {
  Watch watch(path, "/");
  init();
  if (memory_image && memory_image->name == path) {
    PlistId fapl(H5Pcreate(H5P_FILE_ACCESS));
    if (fapl.get() < 0 || H5Pset_fapl_core(fapl.get(), 1 << 16, 0) < 0 ||
        H5Pset_file_image(fapl.get(), const_cast<void*>(memory_image->data), memory_image->size) < 0 ||
        H5Pset_evict_on_close(fapl.get(), 1) < 0)
      throw InputError(path + ": cannot set up HDF5 file access" + with_reason());
    hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get());
    if (id < 0)
      throw InputError(path + ": cannot open HDF5 file, truncated or corrupt" + with_reason());
    return File(path, id);
  }
  std::error_code ec;
  auto st = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(st)) throw InputError(path + ": no such file");
  if (std::filesystem::is_directory(st)) throw InputError(path + ": is a directory, not a file");
  htri_t is = H5Fis_hdf5(path.c_str());
  if (is == 0) {
    last_error();
    throw InputError(path + ": not an HDF5 file");
  }
  if (is < 0) throw InputError(path + ": cannot read file" + with_reason());
  // Evict an object's metadata from the cache when it is closed: a replay opens every batch
  // once, and without this the metadata cache grows with the number of batches read.
  PlistId fapl(H5Pcreate(H5P_FILE_ACCESS));
  if (fapl.get() < 0 || H5Pset_evict_on_close(fapl.get(), 1) < 0)
    throw InputError(path + ": cannot set up HDF5 file access" + with_reason());
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get());
  if (id < 0)
    throw InputError(path + ": cannot open HDF5 file, truncated or corrupt" + with_reason());
  return File(path, id);
}

File File::create(const std::string& path) {
  Watch watch(path, "/");
  init();
  hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (id < 0) throw InputError(path + ": cannot create HDF5 file" + with_reason());
  return File(path, id);
}

File File::create(const std::string& path, unsigned chunk_index_k) {
  Watch watch(path, "/");
  init();
  PlistId fcpl(H5Pcreate(H5P_FILE_CREATE));
  if (fcpl.get() < 0 || H5Pset_istore_k(fcpl.get(), chunk_index_k) < 0)
    throw InputError(path + ": cannot set up HDF5 file creation" + with_reason());
  hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fcpl.get(), H5P_DEFAULT);
  if (id < 0) throw InputError(path + ": cannot create HDF5 file" + with_reason());
  return File(path, id);
}

File File::open_for_update(const std::string& path) {
  Watch watch(path, "/");
  init();
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    last_error();
    throw InputError(path + ": not an HDF5 file (damaged?)");
  }
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  if (id < 0) throw InputError(path + ": cannot open HDF5 file for writing, truncated or corrupt" + with_reason());
  return File(path, id);
}

void File::flush() const {
  Watch watch(name_, "/");
  if (H5Fflush(id_.get(), H5F_SCOPE_LOCAL) < 0) throw InputError(name_ + ": cannot write" + with_reason());
}

Object File::root() const {
  Watch watch(name_, "/");
  hid_t id = H5Oopen(id_.get(), "/", H5P_DEFAULT);
  if (id < 0) throw InputError(name_, "/", "cannot open root group" + with_reason());
  return Object(name_, "/", id);
}

// ---- Object: structure -----------------------------------------------------------------------

Object::~Object() {
  if (id_.get() < 0) return;
  if (keep_damaged_open(file_)) {
    id_.release();
    return;
  }
  Watch watch(file_, path_);
  id_.reset();
}

std::string Object::child_path(const std::string& name) const {
  return path_ == "/" ? "/" + name : path_ + "/" + name;
}

void Object::fail(const std::string& what) const {
  throw InputError(file_, path_, context_ + what);
}

void Object::fail_at(const std::string& path, const std::string& what) const {
  throw InputError(file_, path, context_ + what);
}

bool Object::has(const std::string& name) const {
  Watch watch(file_, path_);
  // H5Lexists needs every intermediate link of a path to exist; check them in turn.
  if (name.empty()) return false;
  size_t pos = 0;
  while (true) {
    size_t slash = name.find('/', pos);
    std::string prefix = name.substr(0, slash);
    if (H5Lexists(id(), prefix.c_str(), no_elinks()) <= 0) {
      last_error();
      return false;
    }
    H5L_info_t info{};
    if (H5Lget_info(id(), prefix.c_str(), &info, no_elinks()) >= 0 && info.type != H5L_TYPE_HARD &&
        info.type != H5L_TYPE_SOFT)
      fail_at(child_path(prefix), info.type == H5L_TYPE_EXTERNAL
                                      ? "is an external link to another file: divscope reads only the files it is given"
                                      : "is a user-defined link: divscope reads only hard and soft links");
    if (slash == std::string::npos) break;
    pos = slash + 1;
  }
  if (H5Oexists_by_name(id(), name.c_str(), no_elinks()) <= 0) {
    last_error();
    return false;
  }
  return true;
}

Object Object::open(const std::string& name) const {
  Watch watch(file_, path_);
  if (!has(name)) fail_at(child_path(name), "missing object");
  hid_t h = H5Oopen(id(), name.c_str(), no_elinks());
  if (h < 0) fail_at(child_path(name), "cannot open" + with_reason());
  Object o(file_, child_path(name), h, context_);
  if (o.is_dataset()) o.check_storage();
  return o;
}

// A dataset whose data may live outside the file is refused before any read: external storage
// (raw data in other files), a virtual dataset (a map of other files' datasets), or a filter
// HDF5 does not build in (it would look for a plugin library).
void Object::check_storage() const {
  Watch watch(file_, path_);
  PlistId dcpl(H5Dget_create_plist(id()));
  if (dcpl.get() < 0) fail("cannot read the dataset's storage properties" + with_reason());
  if (H5Pget_layout(dcpl.get()) == H5D_VIRTUAL)
    fail("is a virtual dataset (its data come from other files): divscope reads only the files it is given");
  const int ext = H5Pget_external_count(dcpl.get());
  if (ext > 0) {
    char name[512] = {0};
    off_t offset = 0;
    hsize_t size = 0;
    H5Pget_external(dcpl.get(), 0, sizeof(name) - 1, name, &offset, &size);
    fail(std::string("stores its data in the external file '") + name +
         "': divscope reads only the files it is given");
  }
  const int nf = H5Pget_nfilters(dcpl.get());
  for (int i = 0; i < nf; ++i) {
    unsigned flags = 0, config = 0;
    size_t nelmts = 0;
    char fname[64] = {0};
    const H5Z_filter_t f = H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &nelmts, nullptr,
                                          sizeof(fname) - 1, fname, &config);
    if (f != H5Z_FILTER_DEFLATE && f != H5Z_FILTER_SHUFFLE && f != H5Z_FILTER_FLETCHER32 &&
        f != H5Z_FILTER_SZIP && f != H5Z_FILTER_NBIT && f != H5Z_FILTER_SCALEOFFSET)
      fail("uses HDF5 filter " + std::to_string(f) + (fname[0] ? std::string(" (") + fname + ")" : "") +
           ", which is not built into HDF5 (divscope loads no filter plugins)");
  }
  last_error();
}

Object Object::group(const std::string& name) const {
  Watch watch(file_, path_);
  if (!has(name)) fail_at(child_path(name), "missing group");
  Object o = open(name);
  if (!o.is_group()) o.fail("expected a group, found a dataset");
  return o;
}

Object Object::dataset(const std::string& name) const {
  Watch watch(file_, path_);
  if (!has(name)) fail_at(child_path(name), "missing dataset");
  Object o = open(name);
  if (!o.is_dataset()) o.fail("expected a dataset, found a group");
  return o;
}

bool Object::is_group() const {
  Watch watch(file_, path_);
  return H5Iget_type(id()) == H5I_GROUP;
}
bool Object::is_dataset() const {
  Watch watch(file_, path_);
  return H5Iget_type(id()) == H5I_DATASET;
}

std::vector<std::string> Object::members() const {
  Watch watch(file_, path_);
  std::vector<std::string> names;
  if (H5Literate(id(), H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_link, &names) < 0)
    fail("cannot list group members" + with_reason());
  return names;
}

std::vector<std::string> Object::members_in_creation_order() const {
  Watch watch(file_, path_);
  unsigned flags = 0;
  PlistId gcpl(H5Gget_create_plist(id()));
  if (gcpl.get() >= 0 && H5Pget_link_creation_order(gcpl.get(), &flags) >= 0 &&
      (flags & H5P_CRT_ORDER_TRACKED)) {
    std::vector<std::string> names;
    if (H5Literate(id(), H5_INDEX_CRT_ORDER, H5_ITER_INC, nullptr, collect_link, &names) >= 0)
      return names;
  }
  last_error();
  return members();
}

// ---- Object: attributes ----------------------------------------------------------------------

std::vector<std::string> Object::attr_names() const {
  Watch watch(file_, path_);
  std::vector<std::string> names;
  if (H5Aiterate2(id(), H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_attr, &names) < 0)
    fail("cannot list attributes" + with_reason());
  return names;
}

bool Object::has_attr(const std::string& name) const {
  Watch watch(file_, path_);
  htri_t e = H5Aexists(id(), name.c_str());
  if (e < 0) last_error();
  return e > 0;
}

AttrValue Object::attr(const std::string& name) const {
  Watch watch(file_, path_);
  const std::string what = "attribute '" + name + "'";
  if (!has_attr(name)) fail("missing " + what);
  AttrId a(H5Aopen(id(), name.c_str(), H5P_DEFAULT));
  if (a.get() < 0) fail("cannot open " + what + with_reason());
  TypeId t(H5Aget_type(a.get()));
  SpaceId s(H5Aget_space(a.get()));
  if (t.get() < 0 || s.get() < 0) fail("cannot read " + what + with_reason());
  H5S_class_t sc = H5Sget_simple_extent_type(s.get());
  bool scalar = sc == H5S_SCALAR;
  size_t n = 0;
  if (scalar) {
    n = 1;
  } else if (sc == H5S_SIMPLE) {
    int rank = H5Sget_simple_extent_ndims(s.get());
    if (rank > 1)
      fail(what + " has rank " + std::to_string(rank) + ", expected a scalar or a 1-D array");
    const hssize_t np = H5Sget_simple_extent_npoints(s.get());
    if (np < 0) fail("cannot read " + what + with_reason());
    n = static_cast<size_t>(np);
  }
  // Attribute data live in the object header or the file's dense storage, uncompressed.
  const int64_t fbytes = file_bytes(*this);
  if (saturating_bytes(static_cast<int64_t>(std::min<size_t>(n, std::numeric_limits<int64_t>::max())),
                       static_cast<int64_t>(H5Tget_size(t.get()))) > fbytes)
    fail(what + " declares " + std::to_string(n) + " elements, more than the file (" + bytes_str(fbytes) +
         ") can hold");
  TypeInfo ti{H5Tget_class(t.get()), H5Tget_size(t.get()), true};
  switch (ti.cls) {
    case H5T_INTEGER:
    case H5T_ENUM: {   // h5py stores numpy bools as an int8 enum; HDF5 converts it to int
      std::vector<int64_t> v(n);
      if (n && H5Aread(a.get(), H5T_NATIVE_INT64, v.data()) < 0)
        fail("cannot read " + what + " as an integer" + with_reason());
      if (scalar) return v[0];
      return v;
    }
    case H5T_FLOAT: {
      std::vector<double> v(n);
      if (n && H5Aread(a.get(), H5T_NATIVE_DOUBLE, v.data()) < 0)
        fail("cannot read " + what + with_reason());
      if (scalar) return v[0];
      return v;
    }
    case H5T_STRING: {
      auto v = read_strings(*this, what, a.get(), t.get(), s.get(), n);
      if (scalar) return v[0];
      return v;
    }
    default:
      fail(what + " has unsupported type " + ti.name());
  }
}

std::string Object::attr_string(const std::string& name) const {
  Watch watch(file_, path_);
  AttrValue v = attr(name);
  if (auto* s = std::get_if<std::string>(&v)) return *s;
  if (auto* a = std::get_if<std::vector<std::string>>(&v); a && a->size() == 1) return (*a)[0];
  fail("attribute '" + name + "' must be a string, got " + kind_name(v));
}

std::vector<std::string> Object::attr_strings(const std::string& name) const {
  Watch watch(file_, path_);
  AttrValue v = attr(name);
  if (auto* s = std::get_if<std::string>(&v)) return {*s};
  if (auto* a = std::get_if<std::vector<std::string>>(&v)) return *a;
  fail("attribute '" + name + "' must be a string array, got " + kind_name(v));
}

int64_t Object::attr_int(const std::string& name) const {
  Watch watch(file_, path_);
  AttrValue v = attr(name);
  if (auto* i = std::get_if<int64_t>(&v)) return *i;
  if (auto* a = std::get_if<std::vector<int64_t>>(&v); a && a->size() == 1) return (*a)[0];
  fail("attribute '" + name + "' must be an integer, got " + kind_name(v));
}

std::vector<int64_t> Object::attr_ints(const std::string& name) const {
  Watch watch(file_, path_);
  AttrValue v = attr(name);
  if (auto* i = std::get_if<int64_t>(&v)) return {*i};
  if (auto* a = std::get_if<std::vector<int64_t>>(&v)) return *a;
  fail("attribute '" + name + "' must be an integer array, got " + kind_name(v));
}

// ---- Object: datasets ------------------------------------------------------------------------

Shape Object::dims() const {
  Watch watch(file_, path_);
  SpaceId s(H5Dget_space(id()));
  if (s.get() < 0) fail("cannot read dataspace" + with_reason());
  H5S_class_t sc = H5Sget_simple_extent_type(s.get());
  if (sc == H5S_SCALAR) return {};
  if (sc != H5S_SIMPLE) fail("dataset has no dataspace (empty)");
  int rank = H5Sget_simple_extent_ndims(s.get());
  if (rank < 0) fail("cannot read dataspace" + with_reason());
  std::vector<hsize_t> d(rank);
  if (H5Sget_simple_extent_dims(s.get(), d.data(), nullptr) < 0) fail("cannot read dataspace" + with_reason());
  Shape out;
  for (hsize_t x : d) {
    if (x > static_cast<hsize_t>(std::numeric_limits<int64_t>::max()))
      fail("dataspace declares a dim of " + std::to_string(x) + ", more than int64 holds");
    out.push_back(static_cast<int64_t>(x));
  }
  try {
    numel(out);
  } catch (const SizeOverflow&) {
    fail("dataspace " + shape_str(out) + " declares more elements than int64 holds");
  }
  return out;
}

void Object::check_size() const {
  Watch watch(file_, path_);
  const Shape d = dims();
  const int64_t n = numel(d);
  const TypeInfo t = type();
  const int64_t stored = saturating_bytes(n, static_cast<int64_t>(t.bytes));
  // What the file can hold: its size, or with deflate its size times deflate's largest ratio.
  // After szip, n-bit or scale-offset (built into HDF5, never written by divscope or capture)
  // the ratio has no useful bound: only the memory bound applies.
  PlistId dcpl(H5Dget_create_plist(id()));
  if (dcpl.get() < 0) fail("cannot read the dataset's storage properties" + with_reason());
  int64_t ratio = 1;
  const int nf = H5Pget_nfilters(dcpl.get());
  for (int i = 0; i < nf; ++i) {
    unsigned flags = 0, config = 0;
    size_t nelmts = 0;
    const H5Z_filter_t f = H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &nelmts, nullptr, 0,
                                          nullptr, &config);
    if (f == H5Z_FILTER_DEFLATE) ratio = std::max(ratio, kMaxDeflateRatio);
    else if (f != H5Z_FILTER_SHUFFLE && f != H5Z_FILTER_FLETCHER32) ratio = 0;
  }
  if (ratio > 0) {
    const int64_t fbytes = file_bytes(*this);
    if (stored > saturating_bytes(fbytes, ratio))
      fail("dataset declares " + shape_str(d) + " " + t.name() + " elements (" + bytes_str(stored) +
           "), more than the file (" + bytes_str(fbytes) + ") can hold" +
           (ratio > 1 ? " even compressed (deflate: at most 1032:1)" : ""));
  }
  const int64_t need = saturating_bytes(n, sizeof(double));
  if (need > host_memory_bytes())
    fail("dataset declares " + shape_str(d) + " elements: " + bytes_str(need) +
         " as float64, more than this machine's memory (" + bytes_str(host_memory_bytes()) + ")");
}

TypeInfo Object::type() const {
  Watch watch(file_, path_);
  TypeId t(H5Dget_type(id()));
  if (t.get() < 0) fail("cannot read datatype" + with_reason());
  TypeInfo ti{H5Tget_class(t.get()), H5Tget_size(t.get()), true};
  if (ti.cls == H5T_INTEGER) ti.is_signed = H5Tget_sign(t.get()) != H5T_SGN_NONE;
  return ti;
}

Tensor Object::read_f64() const {
  Watch watch(file_, path_);
  check_size();
  Tensor t(dims());
  if (t.size() && H5Dread(id(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.ptr()) < 0)
    fail("cannot read dataset" + with_reason());
  return t;
}

std::vector<int64_t> Object::read_i64() const {
  Watch watch(file_, path_);
  check_size();
  std::vector<int64_t> v(numel(dims()));
  if (!v.empty() && H5Dread(id(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) < 0)
    fail("cannot read dataset" + with_reason());
  return v;
}

// ---- Object: writing -------------------------------------------------------------------------

void Object::remove(const std::string& name) const {
  if (!has(name)) return;
  Watch watch(file_, child_path(name));
  if (H5Ldelete(id_.get(), name.c_str(), H5P_DEFAULT) < 0) fail_at(child_path(name), "cannot remove" + with_reason());
}

Object Object::create_group(const std::string& name) const {
  Watch watch(file_, path_);
  PlistId gcpl(H5Pcreate(H5P_GROUP_CREATE));
  H5Pset_link_creation_order(gcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
  hid_t g = H5Gcreate2(id(), name.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT);
  if (g < 0) fail_at(child_path(name), "cannot create group" + with_reason());
  return Object(file_, child_path(name), g, context_);
}

void Object::write_attr(const std::string& name, const AttrValue& v) const {
  Watch watch(file_, path_);
  const bool scalar = v.index() < 3;
  std::vector<const char*> strs;
  const void* data = nullptr;
  size_t n = 1;
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) {
          strs.push_back(x.c_str());
          data = strs.data();
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          for (const std::string& s : x) strs.push_back(s.c_str());
          data = strs.data();
          n = x.size();
        } else if constexpr (std::is_arithmetic_v<T>) {
          data = &x;
        } else {
          data = x.data();
          n = x.size();
        }
      },
      v);
  TypeId strtype;
  hid_t ftype = file_type_of(v), mtype = v.index() % 3 == 0 ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE;
  if (v.index() % 3 == 2) {
    strtype = TypeId(H5Tcopy(H5T_C_S1));
    H5Tset_size(strtype.get(), H5T_VARIABLE);
    H5Tset_cset(strtype.get(), H5T_CSET_UTF8);
    ftype = mtype = strtype.get();
  }
  hsize_t dim = n;
  SpaceId space(scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dim, nullptr));
  AttrId a(H5Acreate2(id(), name.c_str(), ftype, space.get(), H5P_DEFAULT, H5P_DEFAULT));
  if (a.get() < 0) fail("cannot create attribute '" + name + "'" + with_reason());
  if (n && H5Awrite(a.get(), mtype, data) < 0)
    fail("cannot write attribute '" + name + "'" + with_reason());
}

void Object::write_dataset(const std::string& name, const Tensor& t) const {
  Watch watch(file_, path_);
  std::vector<hsize_t> d(t.shape.begin(), t.shape.end());
  SpaceId space(d.empty() ? H5Screate(H5S_SCALAR)
                          : H5Screate_simple(static_cast<int>(d.size()), d.data(), nullptr));
  ObjectId ds(H5Dcreate2(id(), name.c_str(), H5T_IEEE_F64LE, space.get(), H5P_DEFAULT,
                         H5P_DEFAULT, H5P_DEFAULT));
  if (ds.get() < 0) fail_at(child_path(name), "cannot create dataset" + with_reason());
  if (t.size() && H5Dwrite(ds.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.ptr()) < 0)
    fail_at(child_path(name), "cannot write dataset" + with_reason());
}

Object Object::write_raw_dataset(const std::string& name, const Shape& shape, hid_t ftype,
                                 hid_t mtype, const void* data, int deflate) const {
  Watch watch(file_, path_);
  const std::string where = child_path(name);
  std::vector<hsize_t> d(shape.begin(), shape.end());
  SpaceId space(d.empty() ? H5Screate(H5S_SCALAR)
                          : H5Screate_simple(static_cast<int>(d.size()), d.data(), nullptr));
  PlistId dcpl(H5Pcreate(H5P_DATASET_CREATE));
  if (space.get() < 0 || dcpl.get() < 0) fail_at(where, "cannot create dataset" + with_reason());
  const int64_t n = numel(shape);
  if (deflate > 0 && !d.empty() && n > 0) {
    const std::vector<hsize_t> chunk = chunk_dims(d, H5Tget_size(ftype), 1 << 20);
    if (H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()) < 0 ||
        H5Pset_shuffle(dcpl.get()) < 0 || H5Pset_deflate(dcpl.get(), static_cast<unsigned>(deflate)) < 0)
      fail_at(where, "cannot set up chunking and compression" + with_reason());
  }
  ObjectId ds(H5Dcreate2(id(), name.c_str(), ftype, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
  if (ds.get() < 0) fail_at(where, "cannot create dataset" + with_reason());
  if (n > 0 && H5Dwrite(ds.get(), mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    fail_at(where, "cannot write dataset" + with_reason());
  return Object(file_, where, ds.release(), context_);
}

// ---- float datasets in their own precision ---------------------------------------------------

const char* dtype_name(FloatDtype t) {
  switch (t) {
    case FloatDtype::float16: return "float16";
    case FloatDtype::bfloat16: return "bfloat16";
    case FloatDtype::float32: return "float32";
    case FloatDtype::float64: return "float64";
  }
  return "?";
}

FloatDtype float_dtype(const Object& d) {
  const TypeInfo t = d.type();
  if (d.has_attr("dtype")) {
    const std::string a = d.attr_string("dtype");
    if (a != "bfloat16")
      d.fail("attribute dtype = \"" + a + "\": only \"bfloat16\" is known");
    if (t.cls != H5T_INTEGER || t.bytes != 2)
      d.fail("dataset has dtype " + t.name() +
             " with attribute dtype = \"bfloat16\", expected the bits as int16");
    return FloatDtype::bfloat16;
  }
  if (t.is_float()) {
    if (t.bytes == 4) return FloatDtype::float32;
    if (t.bytes == 8) return FloatDtype::float64;
    if (t.bytes == 2) {
      Watch watch(d.file(), d.path());
      TypeId ft(H5Dget_type(d.id()));
      size_t spos = 0, epos = 0, esize = 0, mpos = 0, msize = 0;
      if (ft.get() >= 0 && H5Tget_fields(ft.get(), &spos, &epos, &esize, &mpos, &msize) >= 0 &&
          spos == 15 && epos == 10 && esize == 5 && mpos == 0 && msize == 10 &&
          H5Tget_ebias(ft.get()) == 15)
        return FloatDtype::float16;
      last_error();
      d.fail("dataset is a 16-bit float that is not IEEE binary16");
    }
  }
  d.fail("dataset has dtype " + t.name() +
         ", expected float16, float32, float64 or bfloat16 (int16 bits with attribute dtype = "
         "\"bfloat16\")");
}

Tensor read_exact_f64(const Object& d, FloatDtype t) {
  Watch watch(d.file(), d.path());
  d.check_size();
  switch (t) {
    case FloatDtype::float64:
      return d.read_f64();   // at most a byte swap
    case FloatDtype::float32: {
      Tensor out(d.dims());
      std::vector<float> v(static_cast<size_t>(out.size()));
      if (!v.empty() && H5Dread(d.id(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) < 0)
        d.fail("cannot read dataset" + with_reason());
      for (size_t k = 0; k < v.size(); ++k) out.data[k] = v[k];
      return out;
    }
    case FloatDtype::float16:
    case FloatDtype::bfloat16: {
      const bool half = t == FloatDtype::float16;
      Tensor out(d.dims());
      const std::vector<uint16_t> bits = read_bits16(d, half);
      for (size_t k = 0; k < bits.size(); ++k)
        out.data[k] = half ? half_bits_to_float(bits[k]) : bf16_bits_to_float(bits[k]);
      return out;
    }
  }
  d.fail("unknown dtype");
}

TypeId float16_type() {
  // h5py's IEEE_F16LE: IEEE_F32LE with the fields of binary16, 2 bytes, exponent bias 15.
  TypeId t(H5Tcopy(H5T_IEEE_F32LE));
  if (t.get() < 0 || H5Tset_fields(t.get(), 15, 10, 5, 0, 10) < 0 || H5Tset_size(t.get(), 2) < 0 ||
      H5Tset_ebias(t.get(), 15) < 0)
    throw InputError("cannot make the HDF5 float16 type" + with_reason());
  return t;
}

// ---- header ----------------------------------------------------------------------------------

int64_t check_header(const Object& root, const std::string& format, int64_t max_version) {
  if (!root.has_attr("divscope_format"))
    root.fail("missing attribute 'divscope_format' (not a divscope file)");
  std::string f = root.attr_string("divscope_format");
  if (f != format) root.fail("divscope_format is \"" + f + "\", expected \"" + format + "\"");
  if (!root.has_attr("divscope_version")) root.fail("missing attribute 'divscope_version'");
  int64_t v = root.attr_int("divscope_version");
  if (v < 1 || v > max_version)
    root.fail("unsupported divscope_version " + std::to_string(v) + " (this build reads 1" +
              (max_version > 1 ? " to " + std::to_string(max_version) : std::string()) + ")");
  return v;
}

}  // namespace divscope::h5
