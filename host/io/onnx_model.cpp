// The ONNX reader (onnx_model.h, docs/onnx.md): protobuf parse, constants, and the lowering of
// each node to divscope layers on batch-first values.
//
// Every ONNX value is either a constant (folded in FP64) or batched: it holds the samples of the
// batch along one axis, possibly merged with neighbouring dims as outer·N·inner (e.g. the
// [N·heads, T, D] of an attention). divscope's graph keeps every batched value batch-first, so a
// batched ONNX value maps to a layer whose per-sample data is the ONNX tensor with N taken out;
// axis attributes are remapped, and an op that would act along the batch axis is refused. The
// graph is evaluated at one batch size n (the model's fixed batch, else kImportBatch), which is
// how Shape → Gather → Concat → Reshape subgraphs fold to static shapes.
#include "io/onnx_model.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fcntl.h>
#include <malloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>
#include <onnx/onnx_pb.h>

#include "errors.h"
#include "io/h5io.h"
#include "io/h5wrap.h"
#include "io/onnx_const.h"

namespace divscope {
namespace {

using namespace onnx_import;

// The batch size a graph with a symbolic batch dim is evaluated at: prime and unlike any
// channel or head count, so that the batch axis is not confused with another dim of the same size.
constexpr int64_t kImportBatch = 7;

struct Layout {
  int64_t axis = 0, outer = 1, inner = 1;
  bool operator==(const Layout& o) const { return axis == o.axis && outer == o.outer && inner == o.inner; }
};

struct BVal {
  Shape shape;        // ONNX shape at batch n
  Layout lay;
  std::string ref;    // divscope value: a graph input or a layer
  bool is_int = false;
};

struct Val {
  bool is_const = false;
  bool empty = false;   // a batched value with a zero-size dim (a roll by 0 slices one): only Concat takes it
  CVal c;
  BVal b;
};

Shape per_sample(const BVal& b) {
  Shape s(b.shape.begin(), b.shape.begin() + b.lay.axis);
  if (b.lay.outer > 1) s.push_back(b.lay.outer);
  if (b.lay.inner > 1) s.push_back(b.lay.inner);
  s.insert(s.end(), b.shape.begin() + b.lay.axis + 1, b.shape.end());
  return s;
}

int64_t prod(const Shape& s, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t k = from; k < to; ++k) p *= s[k];
  return p;
}

const char* elem_name(int t) {
  switch (t) {
    case onnx::TensorProto::FLOAT: return "float";
    case onnx::TensorProto::DOUBLE: return "double";
    case onnx::TensorProto::FLOAT16: return "float16";
    case onnx::TensorProto::BFLOAT16: return "bfloat16";
    case onnx::TensorProto::INT64: return "int64";
    case onnx::TensorProto::INT32: return "int32";
    case onnx::TensorProto::BOOL: return "bool";
    case onnx::TensorProto::STRING: return "string";
    default: return "another type";
  }
}

class Importer {
 public:
  Importer(const std::string& file, onnx::ModelProto& mp, const OnnxImportOptions& opt)
      : file_(file), mp_(mp), g_(*mp.mutable_graph()), opt_(opt) {}

  Model run() {
    m_.file = file_;
    m_.format = "onnx";
    // PyTorch names every exported graph torch_jit (or main_graph): the file says more.
    const std::string& gn = g_.name();
    m_.name = gn.empty() || gn == "torch_jit" || gn == "main_graph" ? stem(file_) : gn;
    read_opset();
    read_initializers();
    malloc_trim(0);   // the protobuf's copies of the weights, freed above, back to the system
    read_inputs();
    count_consumers();
    // Constant nodes first: the pattern fusions look ahead at scalars (eps, 2, √2) that
    // exporters place after the node where a pattern starts.
    for (int i = 0; i < g_.node_size(); ++i) {
      if (g_.node(i).op_type() != "Constant" || g_.node(i).input_size() != 0) continue;
      node_i_ = i;
      node_ = &g_.node(i);
      lower_node();
      skip_.insert(i);
    }
    node_ = nullptr;
    if (fuse_patterns_) find_tanh_gelus();
    for (int i = 0; i < g_.node_size(); ++i) {
      if (skip_.count(i)) continue;
      node_i_ = i;
      node_ = &g_.node(i);
      lower_node();
      release_inputs();
    }
    node_ = nullptr;
    read_outputs();
    std::string notes = "ONNX opset " + std::to_string(opset_) + ", " + std::to_string(g_.node_size()) +
                        " nodes: " + std::to_string(folded_) + " folded to constants";
    if (fused_) notes += ", " + std::to_string(fused_) + " fused";
    if (aliased_) notes += ", " + std::to_string(aliased_) + " without arithmetic (Identity, Dropout, Cast, no-op reshapes)";
    m_.notes = notes;
    validate_and_infer(m_);
    for (const Layer& L : m_.layers)
      if (!L.value.name.empty() && L.out_shape != expected_ps_.at(L.name))
        throw std::logic_error("ONNX import: layer '" + L.name + "' has per-sample shape " +
                               shape_str(L.out_shape) + ", its value '" + L.value.name + "' " +
                               shape_str(expected_ps_.at(L.name)));
    return std::move(m_);
  }

 private:
  // ----- errors
  std::string node_label() const {
    if (!node_) return "graph";
    const std::string nm = !node_->name().empty() ? node_->name()
                           : node_->output_size() ? node_->output(0) : "#" + std::to_string(node_i_);
    return "node '" + nm + "' (" + node_->op_type() + ")";
  }
  [[noreturn]] void fail(const std::string& what) const { throw InputError(file_, node_label(), what); }
  [[noreturn]] void fail_at(const std::string& where, const std::string& what) const {
    throw InputError(file_, where, what);
  }
  static std::string stem(const std::string& p) {
    std::string s = p.substr(p.find_last_of('/') + 1);
    const size_t dot = s.rfind('.');
    return dot == std::string::npos ? s : s.substr(0, dot);
  }

  // ----- graph-level reading
  void read_opset() {
    for (const onnx::OperatorSetIdProto& o : mp_.opset_import())
      if (o.domain().empty() || o.domain() == "ai.onnx") opset_ = o.version();
    if (opset_ == 0) fail_at("opset_import", "no opset for the default ONNX domain");
    if (opset_ < 9 || opset_ > 21)
      fail_at("opset_import", "opset " + std::to_string(opset_) +
                                  " is not supported (divscope reads opsets 9 to 21; convert with "
                                  "onnx.version_converter)");
  }

  void read_initializers() {
    size_t freed = 0;
    for (int k = 0; k < g_.initializer_size(); ++k) {
      onnx::TensorProto* t = g_.mutable_initializer(k);
      Val v;
      v.is_const = true;
      try {
        v.c = from_tensor(*t, "initializer '" + t->name() + "'");
      } catch (const std::runtime_error& e) {
        fail_at("graph", e.what());
      }
      // The protobuf copy is no longer needed: keep the peak near one copy of the weights.
      freed += t->raw_data().size() + 4 * static_cast<size_t>(t->float_data_size());
      std::string().swap(*t->mutable_raw_data());
      t->clear_float_data();
      if (freed > (size_t{32} << 20)) {   // hand it back as we go, not only at the end
        malloc_trim(0);
        freed = 0;
      }
      vals_[t->name()] = std::move(v);
      initializer_names_.insert(t->name());
    }
    for (const onnx::SparseTensorProto& s : g_.sparse_initializer())
      fail_at("graph", "sparse initializer '" + s.values().name() + "' is not supported");
  }

  void read_inputs() {
    int64_t fixed_batch = -1;
    struct In { const onnx::ValueInfoProto* vi; int64_t axis; };
    std::vector<In> ins;
    for (const onnx::ValueInfoProto& vi : g_.input()) {
      if (initializer_names_.count(vi.name())) continue;   // old exporters list weights as inputs
      const std::string where = "graph input '" + vi.name() + "'";
      if (!vi.type().has_tensor_type()) fail_at(where, "is not a tensor");
      const onnx::TypeProto_Tensor& tt = vi.type().tensor_type();
      if (!tt.has_shape()) fail_at(where, "has no shape (rank unknown)");
      const int rank = tt.shape().dim_size();
      if (rank == 0) fail_at(where, "is a scalar: divscope needs a batch axis");
      int64_t axis = 0;
      for (int d = 0; d < rank; ++d) {
        std::string p = tt.shape().dim(d).dim_param();
        std::transform(p.begin(), p.end(), p.begin(), ::tolower);
        if (p.find("batch") != std::string::npos) {
          axis = d;
          break;
        }
      }
      const onnx::TensorShapeProto_Dimension& bd = tt.shape().dim(static_cast<int>(axis));
      if (bd.has_dim_value() && bd.dim_value() > 0) {
        if (fixed_batch > 0 && fixed_batch != bd.dim_value())
          fail_at(where, "batch dim " + std::to_string(bd.dim_value()) + " differs from another input's " +
                             std::to_string(fixed_batch));
        fixed_batch = bd.dim_value();
      }
      ins.push_back({&vi, axis});
    }
    if (ins.empty()) fail_at("graph", "no inputs (besides initializers)");
    n_ = fixed_batch > 0 ? fixed_batch : kImportBatch;
    for (const In& in : ins) {
      const onnx::ValueInfoProto& vi = *in.vi;
      const std::string where = "graph input '" + vi.name() + "'";
      const onnx::TypeProto_Tensor& tt = vi.type().tensor_type();
      const int et = tt.elem_type();
      GraphInput gi;
      gi.name = vi.name();
      gi.path = where;
      gi.batch_axis = in.axis;
      if (et == onnx::TensorProto::FLOAT || et == onnx::TensorProto::DOUBLE ||
          et == onnx::TensorProto::FLOAT16 || et == onnx::TensorProto::BFLOAT16)
        gi.dtype = "float32";
      else if (et == onnx::TensorProto::INT64 || et == onnx::TensorProto::INT32)
        gi.dtype = "int64";
      else
        fail_at(where, std::string("has element type ") + elem_name(et) + "; divscope takes float or integer inputs");
      auto hint = opt_.input_shapes.find(gi.name);
      const int rank = tt.shape().dim_size();
      if (hint != opt_.input_shapes.end() && static_cast<int>(hint->second.size()) != rank - 1)
        fail_at(where, "has rank " + std::to_string(rank) + " but the recording holds samples of shape " +
                           shape_str(hint->second));
      BVal b;
      b.lay.axis = in.axis;
      b.is_int = gi.dtype == "int64";
      b.ref = gi.name;
      int k = 0;
      for (int d = 0; d < rank; ++d) {
        if (d == in.axis) {
          b.shape.push_back(n_);
          continue;
        }
        const onnx::TensorShapeProto_Dimension& dim = tt.shape().dim(d);
        int64_t v = dim.has_dim_value() ? dim.dim_value() : -1;
        if (hint != opt_.input_shapes.end()) {
          const int64_t h = hint->second[k];
          if (v > 0 && v != h)
            fail_at(where, "dim " + std::to_string(d) + " is " + std::to_string(v) + " in the model, " +
                               std::to_string(h) + " in the recording (samples of shape " +
                               shape_str(hint->second) + ")");
          v = h;
        }
        if (v <= 0)
          fail_at(where, "dim " + std::to_string(d) +
                             (dim.dim_param().empty() ? "" : " ('" + dim.dim_param() + "')") +
                             " is dynamic; a recording fixes it (divscope inspect MODEL.onnx --recording REC.h5)");
        b.shape.push_back(v);
        gi.shape.push_back(v);
        ++k;
      }
      m_.inputs.push_back(gi);
      Val v;
      v.b = b;
      vals_[gi.name] = v;
    }
  }

  void count_consumers() {
    for (int i = 0; i < g_.node_size(); ++i) node_idx_[&g_.node(i)] = i;
    for (int i = 0; i < g_.node_size(); ++i)
      for (const std::string& in : g_.node(i).input())
        if (!in.empty()) {
          ++consumers_[in];
          std::vector<int>& r = readers_[in];
          if (r.empty() || r.back() != i) r.push_back(i);
        }
    for (int i = 0; i < g_.node_size(); ++i)
      for (const std::string& o : g_.node(i).output())
        if (!o.empty()) producer_.emplace(o, i);
    for (const onnx::ValueInfoProto& o : g_.output()) ++consumers_[o.name()];
    for (const onnx::ValueInfoProto& o : g_.output()) graph_outputs_.insert(o.name());
  }

  // Constants no later node reads are freed (the weights are copied into layer parameters).
  void release_inputs() {
    for (const std::string& in : node_->input()) {
      if (in.empty()) continue;
      if (--consumers_[in] > 0) continue;
      auto it = vals_.find(in);
      if (it != vals_.end() && it->second.is_const) std::vector<double>().swap(it->second.c.v);
    }
  }

  void read_outputs() {
    for (const onnx::ValueInfoProto& o : g_.output()) {
      auto it = vals_.find(o.name());
      if (it == vals_.end()) fail_at("graph output '" + o.name() + "'", "no node computes it");
      if (it->second.is_const)
        fail_at("graph output '" + o.name() + "'", "is a constant (it does not depend on the inputs)");
      if (m_.find_input(it->second.b.ref) >= 0) continue;   // an input passed through
      if (std::find(m_.outputs.begin(), m_.outputs.end(), it->second.b.ref) == m_.outputs.end())
        m_.outputs.push_back(it->second.b.ref);
    }
    if (m_.outputs.empty()) fail_at("graph", "no graph output is computed from the inputs");
  }

  // ----- values
  const Val* in_val(int k) const {
    if (k >= node_->input_size() || node_->input(k).empty()) return nullptr;
    auto it = vals_.find(node_->input(k));
    if (it == vals_.end())
      fail("input '" + node_->input(k) +
           "' is not a graph input, an initializer or the output of an earlier node (missing "
           "initializer, or the nodes are not in topological order / form a cycle)");
    return &it->second;
  }
  const Val& need(int k) const {
    const Val* v = in_val(k);
    if (!v) fail("input " + std::to_string(k) + " is missing");
    return *v;
  }
  const CVal& need_const(int k, const char* what) const {
    const Val& v = need(k);
    if (!v.is_const) fail(std::string(what) + " (input " + std::to_string(k) + ", '" + node_->input(k) +
                          "') must be a constant (an initializer or folded), it depends on the inputs");
    return v.c;
  }
  const BVal& need_batched(int k) const {
    const Val& v = need(k);
    if (v.is_const) fail("input " + std::to_string(k) + " must depend on the inputs");
    if (v.empty) fail("input '" + node_->input(k) + "' is empty (a zero-size dim); divscope takes empty values only as Concat operands");
    static const std::set<std::string> views = {"Gather", "Reshape", "Flatten", "Squeeze", "Unsqueeze",
                                                "Identity", "Cast"};
    if (v.b.is_int && !views.count(node_->op_type()))
      fail("input '" + node_->input(k) + "' holds integers (indices); divscope takes integer inputs only "
           "as embedding indices (Gather into a weight)");
    return v.b;
  }

  void set_const(int k, CVal c) {
    Val v;
    v.is_const = true;
    v.c = std::move(c);
    vals_[node_->output(k)] = std::move(v);
  }

  // The node's output k is batched value b; when b.ref is a layer this node emitted, that layer
  // is the ONNX value (recorded activations of the value are compared with it).
  void set_out(int k, const BVal& b, bool own = true) {
    const std::string& name = node_->output(k);
    Val v;
    v.b = b;
    vals_[name] = v;
    if (!own) {
      ++aliased_;
      return;
    }
    const int li = layer_index(b.ref);
    if (li < 0) return;
    Layer& L = m_.layers[li];
    if (!L.value.name.empty()) return;
    L.value.name = name;
    L.value.shape = b.shape;
    L.value.shape[b.lay.axis] = b.lay.outer * b.lay.inner;
    L.value.axis = b.lay.axis;
    L.value.outer = b.lay.outer;
    L.value.inner = b.lay.inner;
    expected_ps_[L.name] = per_sample(b);
  }
  int layer_index(const std::string& name) const {
    auto it = layer_of_.find(name);
    return it == layer_of_.end() ? -1 : it->second;
  }

  // ----- emitting layers
  std::string base_name() const {
    if (!node_->name().empty()) return node_->name();
    return node_->output_size() ? node_->output(0) : node_->op_type() + "_" + std::to_string(node_i_);
  }
  std::string unique(const std::string& base) {
    std::string n = base;
    for (int k = 1; used_.count(n) || m_.find_input(n) >= 0; ++k) n = base + "." + std::to_string(k);
    used_.insert(n);
    return n;
  }
  std::string emit(const std::string& op, std::vector<std::string> inputs,
                   std::map<std::string, AttrValue> attrs = {},
                   std::map<std::string, Tensor> params = {}, const std::string& suffix = "") {
    Layer L;
    L.index = static_cast<int>(m_.layers.size());
    L.name = unique(base_name() + suffix);
    L.op = op;
    L.inputs = std::move(inputs);
    L.attrs = std::move(attrs);
    L.params = std::move(params);
    L.path = node_label();
    L.source = "ONNX " + node_->op_type() + " node '" + base_name() + "'";
    layer_of_[L.name] = L.index;
    m_.layers.push_back(std::move(L));
    return m_.layers.back().name;
  }
  // Input k's constant as a parameter: moved out when this node is its last reader (the weights
  // are then never held twice), copied otherwise.
  Tensor param_of(int k, const char* what) {
    const CVal& c = need_const(k, what);
    const std::string& name = node_->input(k);
    if (consumers_[name] != 1) return tensor(c);
    Tensor t;
    t.shape = c.shape;
    t.data = std::move(vals_[name].c.v);
    return t;
  }
  // [P, K] from a row-major [K, P] matrix, in tiles (a plain loop misses the cache on every
  // element of a large weight).
  static Tensor transposed(const double* src, int64_t K, int64_t P) {
    Tensor w(Shape{P, K});
    constexpr int64_t T = 32;
    for (int64_t i0 = 0; i0 < K; i0 += T)
      for (int64_t j0 = 0; j0 < P; j0 += T)
        for (int64_t i = i0; i < std::min(K, i0 + T); ++i)
          for (int64_t j = j0; j < std::min(P, j0 + T); ++j) w.data[j * K + i] = src[i * P + j];
    return w;
  }
  static Tensor tensor(const CVal& c) {
    Tensor t(c.shape);
    t.data = c.v;
    return t;
  }

  // A constant as an operand of an op whose output is `out`: aligned to out's rank, 1 along the
  // batch axis (a constant repeated over the batch is collapsed), laid out per sample.
  std::string const_input(const CVal& c0, const BVal& out, const std::string& hint) {
    CVal c = c0;
    const size_t R = out.shape.size();
    if (c.shape.size() > R) fail("constant operand '" + hint + "' has a higher rank than the result");
    c.shape.insert(c.shape.begin(), R - c.shape.size(), 1);
    const int64_t ax = out.lay.axis;
    if (c.shape[ax] != 1) collapse_batch(&c, ax, hint);
    Shape ps(c.shape.begin(), c.shape.begin() + ax);
    if (out.lay.outer > 1) ps.push_back(1);
    if (out.lay.inner > 1) ps.push_back(1);
    ps.insert(ps.end(), c.shape.begin() + ax + 1, c.shape.end());
    for (double v : c.v)
      if (std::isnan(v)) fail("constant operand '" + hint + "' contains NaN");
    Shape full{1};
    full.insert(full.end(), ps.begin(), ps.end());
    Tensor value(full);
    value.data = c.v;
    std::string base = hint;
    if (base.empty() || base[0] == '/') base = base_name() + ":const";
    for (const GraphInput& gi : m_.inputs)
      if (gi.constant && gi.name.rfind(base, 0) == 0 && gi.value.shape == value.shape && gi.value.data == value.data)
        return gi.name;
    GraphInput gi;
    gi.name = unique(base);
    gi.shape = ps;
    gi.dtype = "float32";
    gi.constant = true;
    gi.value = std::move(value);
    gi.path = initializer_names_.count(hint) ? "initializer '" + hint + "'" : "constant of " + node_label();
    m_.inputs.push_back(std::move(gi));
    return m_.inputs.back().name;
  }

  // A constant that has the batch's extent along the batch axis (Expand to a shape taken from
  // the input, folded at batch n) but is the same for every sample: keep one copy.
  void collapse_batch(CVal* c, int64_t ax, const std::string& hint) const {
    const int64_t ext = c->shape[ax];
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < ax; ++d) outer *= c->shape[d];
    for (size_t d = ax + 1; d < c->shape.size(); ++d) inner *= c->shape[d];
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t e = 1; e < ext; ++e)
        if (!std::equal(c->v.begin() + (o * ext + e) * inner, c->v.begin() + (o * ext + e + 1) * inner,
                        c->v.begin() + o * ext * inner))
          fail("constant operand '" + hint + "' has " + std::to_string(ext) +
               " different values along the batch axis (a constant must be the same for every sample)");
    std::vector<double> v;
    v.reserve(outer * inner);
    for (int64_t o = 0; o < outer; ++o)
      v.insert(v.end(), c->v.begin() + o * ext * inner, c->v.begin() + (o * ext + 1) * inner);
    c->v = std::move(v);
    c->shape[ax] = 1;
  }

  // divscope (batch-first, full) axis of ONNX axis d of b; the batch axis is refused.
  int64_t dax(const BVal& b, int64_t d, const std::string& what) const {
    if (d < b.lay.axis) return 1 + d;
    if (d == b.lay.axis)
      fail(what + " acts along axis " + std::to_string(d) +
           ", which holds the batch (samples must stay independent)");
    return d + (b.lay.outer > 1) + (b.lay.inner > 1);
  }
  // The divscope axes ONNX axis d occupies (the merged batch axis: its outer and inner dims).
  std::vector<int64_t> dax_group(const BVal& b, int64_t d) const {
    if (d != b.lay.axis) return {dax(b, d, "")};
    std::vector<int64_t> g;
    int64_t k = 1 + d;
    if (b.lay.outer > 1) g.push_back(k++);
    if (b.lay.inner > 1) g.push_back(k);
    return g;
  }
  bool plain(const BVal& b) const { return b.lay.outer == 1 && b.lay.inner == 1; }
  void need_image(const BVal& b, int rank, const char* what) const {
    if (static_cast<int>(b.shape.size()) != rank || b.lay.axis != 0 || !plain(b))
      fail(std::string(what) + " needs a rank-" + std::to_string(rank) + " input with the batch first, got " +
           shape_str(b.shape) + " with the batch at axis " + std::to_string(b.lay.axis));
  }

  // Reshape-like: `b` viewed with ONNX shape `out` (same elements, row-major order kept).
  BVal reshape_to(const BVal& b, const Shape& out, const Layout& lay, const std::string& suffix = "") {
    BVal r;
    r.shape = out;
    r.lay = lay;
    r.is_int = b.is_int;
    const Shape ps = per_sample(r);
    if (ps == per_sample(b)) {
      r.ref = b.ref;
      return r;
    }
    if (b.is_int)
      fail("reshapes integer indices per sample (" + shape_str(per_sample(b)) + " to " + shape_str(ps) +
           "); divscope takes integer inputs only as they are recorded, into an embedding");
    r.ref = emit("reshape", {b.ref}, {{"shape", ps}}, {}, suffix);
    return r;
  }
  // Where the batch goes when b is reshaped to `out` (row-major order kept): the output axis j
  // whose leading dims hold the same blocks of samples. With n = 1 several axes fit; one without
  // merging is preferred.
  Layout find_layout(const BVal& b, const Shape& out) const {
    const int64_t A = prod(b.shape, 0, b.lay.axis) * b.lay.outer;
    const int64_t B = b.lay.inner * prod(b.shape, b.lay.axis + 1, b.shape.size());
    std::vector<Layout> cands;
    for (size_t j = 0; j < out.size(); ++j) {
      const int64_t P = prod(out, 0, j), S = prod(out, j + 1, out.size());
      if (P == 0 || S == 0 || A % P || B % S) continue;
      const int64_t o = A / P, i = B / S;
      if (out[j] == o * n_ * i) cands.push_back({static_cast<int64_t>(j), o, i});
    }
    if (cands.empty())
      fail("reshapes " + shape_str(b.shape) + " (batch at axis " + std::to_string(b.lay.axis) + ") to " +
           shape_str(out) + ", which mixes the batch with other dims (samples would mix)");
    for (const Layout& l : cands)
      if (l.outer == 1 && l.inner == 1) return l;
    for (const Layout& l : cands)
      if (l.outer == 1) return l;
    return cands[0];
  }

  // Operand refs for an element-wise op over `vals` (const or batched), all broadcast to `out`.
  std::vector<std::string> operands(const std::vector<const Val*>& vals, const BVal& out) {
    std::vector<std::string> refs;
    const size_t R = out.shape.size();
    for (size_t k = 0; k < vals.size(); ++k) {
      const Val& v = *vals[k];
      if (v.is_const) {
        refs.push_back(const_input(v.c, out, node_->input(static_cast<int>(k))));
        continue;
      }
      const size_t shift = R - v.b.shape.size();
      if (shift == 0) {
        refs.push_back(v.b.ref);
        continue;
      }
      Shape ps(shift, 1);
      const Shape p = per_sample(v.b);
      ps.insert(ps.end(), p.begin(), p.end());
      refs.push_back(emit("reshape", {v.b.ref}, {{"shape", ps}}, {}, ".unsqueeze" + std::to_string(k)));
    }
    return refs;
  }
  // The output of an element-wise op over `vals` (at least one batched): broadcast shape and the
  // batched operands' common layout.
  BVal elementwise_out(const std::vector<const Val*>& vals) const {
    std::vector<Shape> shapes;
    size_t R = 0;
    for (const Val* v : vals) {
      shapes.push_back(v->is_const ? v->c.shape : v->b.shape);
      R = std::max(R, shapes.back().size());
    }
    BVal out;
    out.shape = broadcast_shapes(shapes, [this](const std::string& m) { fail(m); });
    bool have = false;
    for (const Val* v : vals) {
      if (v->is_const) continue;
      Layout l = v->b.lay;
      l.axis += static_cast<int64_t>(R - v->b.shape.size());
      if (have && !(l == out.lay))
        fail("operands hold the batch in different places (samples would mix)");
      if (v->b.shape[v->b.lay.axis] != out.shape[l.axis])
        fail("an operand is broadcast along the batch axis");
      out.lay = l;
      have = true;
    }
    return out;
  }
  void lower_elementwise(const std::string& op, const std::vector<const Val*>& vals) {
    BVal out = elementwise_out(vals);
    out.ref = emit(op, operands(vals, out));
    set_out(0, out);
  }
  void lower_unary(const std::string& op, std::map<std::string, AttrValue> attrs = {}) {
    BVal b = need_batched(0);
    b.ref = emit(op, {b.ref}, std::move(attrs));
    set_out(0, b);
  }
  // x (batched) op scalar constant c, as a binary layer.
  BVal with_scalar(const std::string& op, const BVal& x, double c, const std::string& suffix) {
    CVal k;
    k.v = {c};
    BVal out = x;
    out.ref = emit(op, {x.ref, const_input(k, x, base_name() + suffix + ":const")}, {}, {}, suffix);
    return out;
  }

  NodeAttrs attrs() const { return {*node_, failer()}; }
  std::function<void(const std::string&)> failer() const {
    return [this](const std::string& m) { fail(m); };
  }

  // ----- the nodes
  void lower_node() {
    const onnx::NodeProto& n = *node_;
    const std::string& op = n.op_type();
    if (!n.domain().empty() && n.domain() != "ai.onnx")
      fail("op domain '" + n.domain() + "' is not supported (divscope runs the default ONNX domain)");
    if (n.output_size() == 0 || n.output(0).empty()) fail("the node has no output");
    for (const std::string& o : n.output())
      if (!o.empty() && vals_.count(o))
        fail("value '" + o + "' is also written by an earlier node, an initializer or a graph input (ONNX values are assigned once)");
    // Fold when every present input is a constant.
    bool all_const = true;
    std::vector<const CVal*> cins;
    for (int k = 0; k < n.input_size(); ++k) {
      const Val* v = in_val(k);
      cins.push_back(v && v->is_const ? &v->c : nullptr);
      if (v && !v->is_const) all_const = false;
    }
    if (all_const && op != "Split") {
      std::vector<CVal> outs;
      bool known = false;
      try {
        known = fold(attrs(), opset_, cins, &outs);
      } catch (const InputError&) {
        throw;
      } catch (const std::bad_alloc&) {
        throw;
      } catch (const std::exception& e) {
        fail(std::string("cannot fold: ") + e.what());
      }
      if (!known) fail("op " + op + " on constants is not one divscope folds");
      for (size_t k = 0; k < outs.size() && static_cast<int>(k) < n.output_size(); ++k)
        if (!n.output(static_cast<int>(k)).empty()) set_const(static_cast<int>(k), std::move(outs[k]));
      ++folded_;
      return;
    }
    lower_batched(op);
  }

  void lower_batched(const std::string& op) {
    const NodeAttrs a = attrs();
    if (fuse_patterns_ && op == "ReduceMean" && fuse_layernorm(a)) return;
    if (fuse_patterns_ && op == "Div" && fuse_gelu()) return;
    if (tanh_gelu_.count(node_i_) && lower_tanh_gelu()) return;
    if (op == "Identity" || op == "Dropout" || op == "Cast") {
      const BVal& b = need(0).is_const ? fail_b("input must depend on the inputs") : need(0).b;
      if (op == "Dropout" && node_->output_size() > 1 && !node_->output(1).empty() && consumers_[node_->output(1)] > 0)
        fail("Dropout's mask output is used; divscope runs inference (no mask)");
      if (op == "Cast") {
        const int64_t to = a.i("to", 0);
        const bool to_float = to == onnx::TensorProto::FLOAT || to == onnx::TensorProto::DOUBLE ||
                              to == onnx::TensorProto::FLOAT16 || to == onnx::TensorProto::BFLOAT16;
        const bool to_int = to == onnx::TensorProto::INT64 || to == onnx::TensorProto::INT32;
        if (b.is_int && to_int) {
          set_out(0, b, false);
          return;
        }
        if (b.is_int || !to_float)
          fail("Cast of a value that depends on the inputs to " + std::string(elem_name(static_cast<int>(to))) +
               " (divscope keeps every activation float; integers only as embedding indices)");
      }
      set_out(0, b, false);
      return;
    }
    if (op == "Relu") return lower_unary("relu");
    if (op == "Sigmoid") return lower_unary("sigmoid");
    if (op == "Tanh") return lower_unary("tanh");
    if (op == "Erf") return lower_unary("erf");
    if (op == "Sqrt") return lower_unary("sqrt");
    if (op == "Exp") return lower_unary("exp");
    if (op == "Log") return lower_unary("log");
    if (op == "Abs") return lower_unary("abs");
    if (op == "Neg") return lower_unary("neg");
    if (op == "HardSwish") return lower_unary("hardswish");
    if (op == "LeakyRelu") return lower_unary("leaky_relu", {{"negative_slope", a.f("alpha", 0.01)}});
    if (op == "Gelu") return lower_unary("gelu", {{"approximate", a.s("approximate", "none")}});
    if (op == "Reciprocal") {
      CVal one;
      one.v = {1.0};
      BVal b = need_batched(0);
      BVal out = b;
      out.ref = emit("div", {const_input(one, b, base_name() + ":one"), b.ref});
      set_out(0, out);
      return;
    }
    if (op == "HardSigmoid") {
      const double alpha = a.f("alpha", 0.2), beta = a.f("beta", 0.5);
      if (std::fabs(alpha - 1.0 / 6) < 1e-7 && beta == 0.5) return lower_unary("hardsigmoid");
      BVal x = need_batched(0);
      BVal t = with_scalar("mul", x, alpha, ".alpha");
      t = with_scalar("add", t, beta, ".beta");
      t.ref = emit("hardtanh", {t.ref}, {{"min_val", 0.0}, {"max_val", 1.0}});
      set_out(0, t);
      return;
    }
    if (op == "Clip") return lower_clip(a);
    if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div" || op == "Pow" ||
        op == "Max" || op == "Min" || op == "Sum") {
      if (node_->input_size() != 2) fail(op + " with " + std::to_string(node_->input_size()) + " inputs (divscope takes 2)");
      static const std::map<std::string, std::string> m = {
          {"Add", "add"}, {"Sub", "sub"}, {"Mul", "mul"}, {"Div", "div"}, {"Pow", "pow"},
          {"Max", "maximum"}, {"Min", "minimum"}, {"Sum", "add"}};
      for (int k = 0; k < 2; ++k)
        if (!need(k).is_const) need_batched(k);
      return lower_elementwise(m.at(op), {&need(0), &need(1)});
    }
    if (op == "Where") {
      if (!need(0).is_const)
        fail("the condition depends on the inputs; divscope takes Where with a constant mask");
      for (int k = 1; k < 3; ++k)
        if (!need(k).is_const) need_batched(k);
      return lower_elementwise("where", {&need(0), &need(1), &need(2)});
    }
    if (op == "MatMul") return lower_matmul();
    if (op == "Gemm") return lower_gemm(a);
    if (op == "Conv") return lower_conv(a, false);
    if (op == "ConvTranspose") return lower_conv(a, true);
    if (op == "BatchNormalization") return lower_batchnorm(a);
    if (op == "InstanceNormalization") return lower_instancenorm(a);
    if (op == "LayerNormalization") return lower_layernorm(a);
    if (op == "Softmax" || op == "LogSoftmax") return lower_softmax(a, op == "Softmax" ? "softmax" : "log_softmax");
    if (op == "ReduceMean" || op == "ReduceSum" || op == "ReduceMax") return lower_reduce(a, op);
    if (op == "MaxPool" || op == "AveragePool") return lower_pool(a, op == "MaxPool");
    if (op == "GlobalAveragePool") {
      BVal b = need_batched(0);
      need_image(b, 4, "GlobalAveragePool");
      b.ref = emit("global_avgpool2d", {b.ref});
      b.shape[2] = b.shape[3] = 1;
      set_out(0, b);
      return;
    }
    if (op == "GlobalMaxPool") {
      BVal b = need_batched(0);
      need_image(b, 4, "GlobalMaxPool");
      b.ref = emit("reduce_max", {b.ref}, {{"axes", std::vector<int64_t>{2, 3}}, {"keepdim", int64_t{1}}});
      b.shape[2] = b.shape[3] = 1;
      set_out(0, b);
      return;
    }
    if (op == "Resize" || op == "Upsample") return lower_resize(a, op);
    if (op == "Concat") return lower_concat(a);
    if (op == "Split") return lower_split(a);
    if (op == "Slice") return lower_slice(a);
    if (op == "Gather") return lower_gather(a);
    if (op == "Transpose") return lower_transpose(a);
    if (op == "Reshape" || op == "Flatten") return lower_reshape(a, op);
    if (op == "Squeeze" || op == "Unsqueeze") return lower_squeeze(a, op == "Squeeze");
    if (op == "Expand") return lower_expand();
    if (op == "Pad") return lower_pad(a);
    if (op == "Shape" || op == "Size") {
      // The shape of a batched value is static at import: a constant.
      const Shape& shape = need(0).b.shape;
      set_const(0, op == "Shape" ? shape_value(shape, a) : size_value(shape, failer()));
      ++folded_;
      return;
    }
    if (op == "Equal" || op == "Less" || op == "Greater" || op == "Not" || op == "And" || op == "Or" ||
        op == "LessOrEqual" || op == "GreaterOrEqual")
      fail("a comparison of values that depend on the inputs; divscope takes masks only as constants");
    fail("op " + op + " is not supported (docs/onnx.md lists the ONNX ops divscope runs)");
  }
  [[noreturn]] const BVal& fail_b(const std::string& m) const { fail(m); }

  // ----- fusions: decompositions an exporter wrote for one PyTorch op run as that op, with its
  // rounding (docs/onnx.md). Every intermediate value must be read only inside the pattern.
  const onnx::NodeProto* only_reader(const std::string& v, const char* op) const {
    if (graph_outputs_.count(v)) return nullptr;
    auto it = readers_.find(v);
    if (it == readers_.end() || it->second.size() != 1 || consumers_.at(v) != 1) return nullptr;
    const onnx::NodeProto& n = g_.node(it->second[0]);
    return n.op_type() == op && n.domain().empty() ? &n : nullptr;
  }
  int node_index(const onnx::NodeProto* n) const { return node_idx_.at(n); }
  // The constant scalar operand of binary node n whose other operand is v (nullptr otherwise).
  // The constant operand of binary node n beside v (nullptr when the other operand is not a
  // constant, or v is not an operand).
  const CVal* const_other(const onnx::NodeProto& n, const std::string& v) const {
    if (n.input_size() != 2) return nullptr;
    const std::string& other = n.input(0) == v ? n.input(1) : n.input(1) == v ? n.input(0) : "";
    if (other.empty()) return nullptr;
    auto it = vals_.find(other);
    return it != vals_.end() && it->second.is_const ? &it->second.c : nullptr;
  }
  // The same, when that constant is a scalar.
  const CVal* scalar_with(const onnx::NodeProto& n, const std::string& v) const {
    const CVal* c = const_other(n, v);
    return c && c->v.size() == 1 ? c : nullptr;
  }
  std::vector<int64_t> reduce_axes(const onnx::NodeProto& n) const {
    NodeAttrs na{n, failer()};
    if (opset_ >= 18) {
      if (n.input_size() < 2) return {};
      auto it = vals_.find(n.input(1));
      return it != vals_.end() && it->second.is_const ? as_ints(it->second.c) : std::vector<int64_t>{};
    }
    return na.ints("axes");
  }
  // Marks the pattern's other nodes done; the value of `last` is the fused layer.
  void finish_fusion(const std::vector<const onnx::NodeProto*>& nodes, const onnx::NodeProto* last, BVal out) {
    const onnx::NodeProto* self = node_;
    const int self_i = node_i_;
    for (const onnx::NodeProto* n : nodes) {
      if (n == self) continue;
      skip_.insert(node_index(n));
      node_ = n;
      node_i_ = node_index(n);
      release_inputs();
    }
    node_ = last;
    node_i_ = node_index(last);
    set_out(0, out);
    node_ = self;
    node_i_ = self_i;
    ++fused_;
  }

  // LayerNorm as exported below opset 17: m = ReduceMean(x) → d = x − m → Pow(d, 2) →
  // ReduceMean → Add eps → Sqrt → Div(d, ·) [→ Mul gamma → Add beta], over trailing axes.
  bool fuse_layernorm(const NodeAttrs& a) {
    const Val& xv = need(0);
    if (xv.is_const || xv.b.is_int || xv.empty) return false;
    const BVal& x = xv.b;
    const std::string& xn = node_->input(0);
    const int64_t r = static_cast<int64_t>(x.shape.size());
    std::vector<int64_t> axes = reduce_axes(*node_);
    if (axes.empty() || a.i("keepdims", 1) != 1) return false;
    for (int64_t& v : axes) v = v < 0 ? v + r : v;
    std::sort(axes.begin(), axes.end());
    for (size_t k = 0; k < axes.size(); ++k)
      if (axes[k] != r - static_cast<int64_t>(axes.size()) + static_cast<int64_t>(k)) return false;
    if (axes.front() <= x.lay.axis) return false;
    const onnx::NodeProto* sub = only_reader(node_->output(0), "Sub");
    if (!sub || sub->input(0) != xn || sub->input(1) != node_->output(0)) return false;
    const std::string& d = sub->output(0);
    auto rd = readers_.find(d);
    if (graph_outputs_.count(d) || rd == readers_.end() || rd->second.size() != 2 || consumers_.at(d) != 2) return false;
    const onnx::NodeProto *pw = nullptr, *div = nullptr;
    for (int i : rd->second) {
      const onnx::NodeProto& n = g_.node(i);
      if (n.op_type() == "Pow" && n.input(0) == d) pw = &n;
      if (n.op_type() == "Div" && n.input(0) == d) div = &n;
    }
    if (!pw || !div) return false;
    const CVal* two = scalar_with(*pw, d);
    if (!two || two->v[0] != 2.0 || pw->input(0) != d) return false;
    const onnx::NodeProto* rm2 = only_reader(pw->output(0), "ReduceMean");
    if (!rm2) return false;
    std::vector<int64_t> axes2 = reduce_axes(*rm2);
    for (int64_t& v : axes2) v = v < 0 ? v + r : v;
    std::sort(axes2.begin(), axes2.end());
    if (axes2 != axes || NodeAttrs{*rm2, failer()}.i("keepdims", 1) != 1) return false;
    const onnx::NodeProto* add = only_reader(rm2->output(0), "Add");
    const CVal* eps = add ? scalar_with(*add, rm2->output(0)) : nullptr;
    if (!eps || !(eps->v[0] >= 0)) return false;
    const onnx::NodeProto* sq = only_reader(add->output(0), "Sqrt");
    if (!sq || only_reader(sq->output(0), "Div") != div || div->input(1) != sq->output(0)) return false;
    std::vector<const onnx::NodeProto*> nodes{node_, sub, pw, rm2, add, sq, div};
    const onnx::NodeProto* last = div;
    const Shape ns(x.shape.end() - static_cast<int64_t>(axes.size()), x.shape.end());
    std::map<std::string, Tensor> params;
    auto affine = [&](const char* op, const char* key) {
      const onnx::NodeProto* n = only_reader(last->output(0), op);
      const CVal* c = n ? const_other(*n, last->output(0)) : nullptr;
      if (!c || c->shape.size() > ns.size() || static_cast<int64_t>(c->v.size()) != checked_numel(ns, failer()))
        return false;
      for (size_t k = 0; k < c->shape.size(); ++k)
        if (c->shape[k] != ns[ns.size() - c->shape.size() + k]) return false;
      Tensor t(ns);
      t.data = c->v;
      params[key] = std::move(t);
      nodes.push_back(n);
      last = n;
      return true;
    };
    if (affine("Mul", "weight")) affine("Add", "bias");
    BVal out = x;
    out.ref = emit("layernorm", {x.ref}, {{"normalized_shape", ns}, {"eps", eps->v[0]}}, std::move(params));
    m_.layers.back().source = "ONNX LayerNorm decomposition from node '" + base_name() + "' to '" +
                              (last->name().empty() ? last->output(0) : last->name()) + "' (fused: " +
                              std::to_string(nodes.size()) + " nodes)";
    finish_fusion(nodes, last, out);
    return true;
  }

  // GELU as PyTorch exports it: Div(x, √2) → Erf → Add 1 → Mul x → Mul 0.5.
  bool fuse_gelu() {
    const Val& xv = need(0);
    if (xv.is_const || xv.b.is_int || xv.empty) return false;
    const std::string& xn = node_->input(0);
    const CVal* s2 = scalar_with(*node_, xn);
    if (!s2 || node_->input(0) != xn || std::fabs(s2->v[0] - std::sqrt(2.0)) > 1e-6) return false;
    const onnx::NodeProto* erf = only_reader(node_->output(0), "Erf");
    const onnx::NodeProto* add = erf ? only_reader(erf->output(0), "Add") : nullptr;
    const CVal* one = add ? scalar_with(*add, erf->output(0)) : nullptr;
    if (!one || one->v[0] != 1.0) return false;
    const onnx::NodeProto* mul = only_reader(add->output(0), "Mul");
    if (!mul || mul->input_size() != 2 ||
        !((mul->input(0) == xn && mul->input(1) == add->output(0)) ||
          (mul->input(1) == xn && mul->input(0) == add->output(0))))
      return false;
    const onnx::NodeProto* half = only_reader(mul->output(0), "Mul");
    const CVal* h = half ? scalar_with(*half, mul->output(0)) : nullptr;
    if (!h || h->v[0] != 0.5) return false;
    BVal out = xv.b;
    out.ref = emit("gelu", {out.ref}, {{"approximate", std::string("none")}});
    m_.layers.back().source = "ONNX GELU pattern (Div, Erf, Add, Mul, Mul) from node '" + base_name() + "' (fused)";
    finish_fusion({node_, erf, add, mul, half}, half, out);
    return true;
  }

  // GELU's tanh form, 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), in the orders exporters write
  // it (nn.GELU(approximate='tanh'), Hugging Face's gelu_new with Pow or with x·x·x). Found before
  // lowering, anchored at the Tanh, because its first node (x³ or 0.5·x) comes before the Tanh.
  void find_tanh_gelus() {
    auto prod = [&](const std::string& v, const char* op) -> const onnx::NodeProto* {
      auto it = producer_.find(v);
      if (it == producer_.end()) return nullptr;
      const onnx::NodeProto& n = g_.node(it->second);
      return n.op_type() == op && n.domain().empty() && n.input_size() == 2 ? &n : nullptr;
    };
    auto near = [](const CVal* c, double want) {
      return c && std::fabs(c->v[0] - want) <= 1e-6 * std::fabs(want);
    };
    auto other = [](const onnx::NodeProto& n, const std::string& v) {
      return n.input(0) == v ? n.input(1) : n.input(0);
    };
    for (int i = 0; i < g_.node_size(); ++i) {
      const onnx::NodeProto& t = g_.node(i);
      if (t.op_type() != "Tanh" || t.input_size() != 1 || t.output_size() != 1) continue;
      std::vector<const onnx::NodeProto*> nodes{&t};
      // √(2/π)·d
      const onnx::NodeProto* ne = prod(t.input(0), "Mul");
      if (!ne) continue;
      // scalar_with(n, v): the constant operand beside v
      const std::string d = near(scalar_with(*ne, ne->input(0)), std::sqrt(2 / M_PI)) ? ne->input(0)
                            : near(scalar_with(*ne, ne->input(1)), std::sqrt(2 / M_PI)) ? ne->input(1) : "";
      if (d.empty()) continue;
      nodes.push_back(ne);
      // d = x + 0.044715·x³
      const onnx::NodeProto* nd = prod(d, "Add");
      if (!nd) continue;
      nodes.push_back(nd);
      std::string x, cube;
      for (int k = 0; k < 2 && x.empty(); ++k) {
        const onnx::NodeProto* nc = prod(nd->input(k), "Mul");
        if (!nc) continue;
        for (int q = 0; q < 2; ++q)
          if (near(scalar_with(*nc, nc->input(q)), 0.044715)) {
            x = nd->input(1 - k);
            cube = nc->input(q);
            nodes.push_back(nc);
          }
      }
      if (x.empty()) continue;
      if (const onnx::NodeProto* pw = prod(cube, "Pow")) {
        const CVal* three = scalar_with(*pw, x);
        if (pw->input(0) != x || !three || three->v[0] != 3.0) continue;
        nodes.push_back(pw);
      } else if (const onnx::NodeProto* m3 = prod(cube, "Mul")) {
        const std::string sq = other(*m3, x);
        const onnx::NodeProto* m2 = prod(sq, "Mul");
        if ((m3->input(0) != x && m3->input(1) != x) || !m2 || m2->input(0) != x || m2->input(1) != x) continue;
        nodes.push_back(m3);
        nodes.push_back(m2);
      } else {
        continue;
      }
      // 1 + tanh, then ·x and ·0.5 in either order (0.5·x may come first).
      const onnx::NodeProto* g1 = only_reader(t.output(0), "Add");
      if (!g1 || !near(scalar_with(*g1, t.output(0)), 1.0)) continue;
      nodes.push_back(g1);
      const onnx::NodeProto* m = only_reader(g1->output(0), "Mul");
      if (!m) continue;
      nodes.push_back(m);
      const std::string h = other(*m, g1->output(0));
      const onnx::NodeProto* last = nullptr;
      if (h == x) {                                            // (x·g)·0.5
        last = only_reader(m->output(0), "Mul");
        if (!last || !near(scalar_with(*last, m->output(0)), 0.5)) continue;
        nodes.push_back(last);
      } else if (near(scalar_with(*m, g1->output(0)), 0.5)) {  // x·(g·0.5)
        last = only_reader(m->output(0), "Mul");
        if (!last || other(*last, m->output(0)) != x) continue;
        nodes.push_back(last);
      } else {                                                 // (0.5·x)·g
        const onnx::NodeProto* hx = prod(h, "Mul");
        if (!hx || other(*hx, x) == x || !near(scalar_with(*hx, x), 0.5)) continue;
        nodes.push_back(hx);
        last = m;
      }
      // Every value but x and the result is read only inside the pattern.
      std::set<int> idx;
      for (const onnx::NodeProto* n : nodes) idx.insert(node_index(n));
      bool closed = idx.size() == nodes.size();
      for (const onnx::NodeProto* n : nodes) {
        if (n == last) continue;
        const std::string& v = n->output(0);
        if (graph_outputs_.count(v)) closed = false;
        for (int r : readers_[v]) closed = closed && idx.count(r);
      }
      if (!closed) continue;
      TanhGelu tg{x, {idx.begin(), idx.end()}, node_index(last)};
      tanh_gelu_[*idx.begin()] = tg;
    }
  }
  bool lower_tanh_gelu() {
    const TanhGelu& tg = tanh_gelu_.at(node_i_);
    auto it = vals_.find(tg.x);
    if (it == vals_.end() || it->second.is_const || it->second.empty || it->second.b.is_int) return false;
    BVal out = it->second.b;
    out.ref = emit("gelu", {out.ref}, {{"approximate", std::string("tanh")}});
    m_.layers.back().source = "ONNX GELU tanh pattern (" + std::to_string(tg.nodes.size()) +
                              " nodes) from node '" + base_name() + "' (fused)";
    std::vector<const onnx::NodeProto*> nodes;
    for (int i : tg.nodes) nodes.push_back(&g_.node(i));
    finish_fusion(nodes, &g_.node(tg.last), out);
    return true;
  }

  void lower_clip(const NodeAttrs& a) {
    BVal x = need_batched(0);
    double lo = -INFINITY, hi = INFINITY;
    if (opset_ >= 11) {
      if (const Val* v = in_val(1)) {
        if (!v->is_const || v->c.v.size() != 1) fail("min must be a constant scalar");
        lo = v->c.v[0];
      }
      if (const Val* v = in_val(2)) {
        if (!v->is_const || v->c.v.size() != 1) fail("max must be a constant scalar");
        hi = v->c.v[0];
      }
    } else {
      lo = a.f("min", -INFINITY);
      hi = a.f("max", INFINITY);
    }
    if (std::isnan(lo) || std::isnan(hi) || lo > hi) fail("Clip bounds must be numbers with min <= max");
    if (std::isfinite(lo) && std::isfinite(hi)) {
      x.ref = emit("hardtanh", {x.ref}, {{"min_val", lo}, {"max_val", hi}});
    } else if (lo == 0 && hi == INFINITY) {
      x.ref = emit("relu", {x.ref});
    } else {
      if (lo != -INFINITY) x = with_scalar("maximum", x, lo, std::isfinite(hi) || hi != INFINITY ? ".min" : "");
      if (hi != INFINITY) x = with_scalar("minimum", x, hi, "");
    }
    set_out(0, x);
  }

  // y = x·W (W constant [K, P]) as `linear` (weight Wᵀ), with the bias of a following Add fused.
  void lower_matmul() {
    const Val& va = need(0);
    const Val& vb = need(1);
    if (!va.is_const && vb.is_const && vb.c.shape.size() == 2 && va.b.shape.size() >= 2) {
      const BVal& x = need_batched(0);
      const int64_t r = static_cast<int64_t>(x.shape.size());
      dax(x, r - 1, "MatMul");   // the contracted dim may not hold the batch
      const int64_t K = vb.c.shape[0], P = vb.c.shape[1];
      if (x.shape[r - 1] != K) fail("MatMul of " + shape_str(x.shape) + " by " + shape_str(vb.c.shape));
      std::map<std::string, Tensor> params{{"weight", transposed(vb.c.v.data(), K, P)}};
      BVal out = x;
      out.shape[r - 1] = P;
      int add_node = fusable_bias(P, &params);
      out.ref = emit("linear", {x.ref}, {}, std::move(params));
      if (add_node < 0) {
        set_out(0, out);
        return;
      }
      set_out(0, out);   // the MatMul's own value is the linear layer without bias: not compared
      m_.layers.back().value = SourceValue{};
      expected_ps_.erase(m_.layers.back().name);
      const onnx::NodeProto* self = node_;
      const int self_i = node_i_;
      node_ = &g_.node(add_node);
      node_i_ = add_node;
      set_out(0, out);
      m_.layers.back().source = "ONNX MatMul + Add nodes '" + (self->name().empty() ? self->output(0) : self->name()) +
                                "', '" + base_name() + "' (fused: one rounding for the bias, as a linear layer)";
      release_inputs();
      node_ = self;
      node_i_ = self_i;
      ++fused_;
      skip_.insert(add_node);
      return;
    }
    // General: a batched operand against a batched or constant one; the batch in the leading dims.
    std::vector<const Val*> vals{&va, &vb};
    size_t R = 0;
    for (const Val* v : vals) R = std::max(R, (v->is_const ? v->c.shape : v->b.shape).size());
    if (R < 3) fail("MatMul with the batch in the multiplied dims (rank < 3) is not supported");
    BVal out;
    std::vector<Shape> lead;
    for (const Val* v : vals) {
      const Shape& s = v->is_const ? v->c.shape : v->b.shape;
      if (s.size() < 2) fail("MatMul of a vector is not supported");
      Shape l(R - s.size(), 1);
      l.insert(l.end(), s.begin(), s.end() - 2);
      lead.push_back(l);
      if (!v->is_const) {
        need_batched(v == &va ? 0 : 1);
        if (v->b.lay.axis >= static_cast<int64_t>(s.size()) - 2)
          fail("MatMul with the batch in the multiplied dims is not supported");
        Layout l2 = v->b.lay;
        l2.axis += static_cast<int64_t>(R - s.size());
        if (!out.ref.empty() && !(l2 == out.lay)) fail("operands hold the batch in different places");
        out.lay = l2;
        out.ref = "x";
      }
    }
    const Shape& sa = va.is_const ? va.c.shape : va.b.shape;
    const Shape& sb = vb.is_const ? vb.c.shape : vb.b.shape;
    if (sa.back() != sb[sb.size() - 2]) fail("MatMul of " + shape_str(sa) + " by " + shape_str(sb));
    out.shape = broadcast_shapes(lead, failer());
    out.shape.push_back(sa[sa.size() - 2]);
    out.shape.push_back(sb.back());
    // Operands aligned to rank R (lower-rank batched operands reshaped, constants laid out).
    std::vector<std::string> refs;
    for (size_t k = 0; k < 2; ++k) {
      const Val& v = *vals[k];
      if (v.is_const) {
        BVal like = out;
        like.shape = lead[k];
        const Shape& s = v.c.shape;
        like.shape.insert(like.shape.end(), s.end() - 2, s.end());
        like.shape[out.lay.axis] = out.shape[out.lay.axis];
        refs.push_back(const_input(v.c, like, node_->input(static_cast<int>(k))));
      } else {
        refs.push_back(operands({&v}, BVal{Shape(R, 1), out.lay, "", false})[0]);
      }
    }
    out.ref = emit("matmul", refs);
    set_out(0, out);
  }

  // The Add after a MatMul that only adds a bias of P values: its index, with the bias in params.
  int fusable_bias(int64_t P, std::map<std::string, Tensor>* params) {
    const std::string& y = node_->output(0);
    if (consumers_[y] != 1 || graph_outputs_.count(y)) return -1;
    for (int i = node_i_ + 1; i < g_.node_size(); ++i) {
      const onnx::NodeProto& n = g_.node(i);
      bool reads = false;
      for (const std::string& in : n.input()) reads |= in == y;
      if (!reads) continue;
      if (n.op_type() != "Add" || n.input_size() != 2 || !n.domain().empty()) return -1;
      const std::string& other = n.input(0) == y ? n.input(1) : n.input(0);
      auto it = vals_.find(other);
      if (it == vals_.end() || !it->second.is_const) return -1;
      const CVal& c = it->second.c;
      if (static_cast<int64_t>(c.v.size()) != P || c.shape.empty() || c.shape.back() != P) return -1;
      if (n.output_size() != 1 || vals_.count(n.output(0))) return -1;
      Tensor b(Shape{P});
      b.data = c.v;
      (*params)["bias"] = std::move(b);
      return i;
    }
    return -1;
  }

  void lower_gemm(const NodeAttrs& a) {
    if (need(1).is_const == false) fail("Gemm with a B that depends on the inputs is not supported");
    const BVal& x = need_batched(0);
    const CVal& B = need_const(1, "B");
    const bool ta = a.i("transA", 0) != 0, tb = a.i("transB", 0) != 0;
    const double alpha = a.f("alpha", 1.0), beta = a.f("beta", 1.0);
    if (x.shape.size() != 2 || B.shape.size() != 2) fail("Gemm needs rank-2 A and B");
    const int64_t kdim = ta ? 0 : 1;
    if (x.lay.axis == kdim) fail("Gemm contracts over the axis that holds the batch");
    if (ta && !plain(x)) fail("Gemm with transA and a merged batch is not supported");
    const int64_t K = x.shape[kdim];
    const int64_t P = tb ? B.shape[0] : B.shape[1];
    if ((tb ? B.shape[1] : B.shape[0]) != K) fail("Gemm of " + shape_str(x.shape) + " by " + shape_str(B.shape));
    Tensor w = tb ? tensor(B) : transposed(B.v.data(), K, P);
    w.shape = {P, K};
    std::map<std::string, Tensor> params{{"weight", std::move(w)}};
    const Val* vc = in_val(2);
    if (vc && !vc->is_const) fail("Gemm with a C that depends on the inputs is not supported");
    bool bias_done = false;
    if (vc && alpha == 1.0 && static_cast<int64_t>(vc->c.v.size()) == P && !vc->c.shape.empty() &&
        vc->c.shape.back() == P) {
      Tensor b(Shape{P});
      b.data = vc->c.v;
      for (double& v : b.data) v *= beta;
      params["bias"] = std::move(b);
      bias_done = true;
    }
    BVal out;
    out.shape = {ta ? x.shape[1] : x.shape[0], P};
    out.lay = {0, x.lay.outer, x.lay.inner};
    out.ref = emit("linear", {x.ref}, {}, std::move(params));
    if (alpha != 1.0) out = with_scalar("mul", out, alpha, ".alpha");
    if (vc && !bias_done) {
      CVal c = vc->c;
      for (double& v : c.v) v *= beta;
      out.ref = emit("add", {out.ref, const_input(c, out, node_->input(2))}, {}, {}, ".c");
    }
    set_out(0, out);
  }

  std::vector<int64_t> sym_pads(const NodeAttrs& a, int sp, const Shape& in_sp, const Shape& k,
                                const std::vector<int64_t>& s, const std::vector<int64_t>& d) {
    const std::string ap = a.s("auto_pad", "NOTSET");
    std::vector<int64_t> pads = a.ints("pads");
    if (ap == "VALID") pads.assign(2 * sp, 0);
    else if (ap == "SAME_UPPER" || ap == "SAME_LOWER") {
      pads.assign(2 * sp, 0);
      for (int i = 0; i < sp; ++i) {
        const int64_t out = (in_sp[i] + s[i] - 1) / s[i];
        const int64_t total = std::max<int64_t>((out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - in_sp[i], 0);
        pads[i] = ap == "SAME_UPPER" ? total / 2 : total - total / 2;
        pads[i + sp] = total - pads[i];
      }
    } else if (ap != "NOTSET") {
      fail("auto_pad '" + ap + "' is not supported");
    }
    if (pads.empty()) pads.assign(2 * sp, 0);
    if (static_cast<int>(pads.size()) != 2 * sp) fail("pads must have " + std::to_string(2 * sp) + " entries");
    std::vector<int64_t> p(sp);
    for (int i = 0; i < sp; ++i) {
      if (pads[i] != pads[i + sp])
        fail("asymmetric pads " + shape_str(pads) + " are not supported (divscope pads both sides equally)");
      p[i] = pads[i];
    }
    return p;
  }
  std::vector<int64_t> spatial(const NodeAttrs& a, const char* name, int sp, int64_t def) {
    std::vector<int64_t> v = a.ints(name);
    if (v.empty()) v.assign(sp, def);
    if (static_cast<int>(v.size()) != sp) fail(std::string(name) + " must have " + std::to_string(sp) + " entries");
    for (int64_t x : v)
      if (def > 0 ? x <= 0 : x < 0) fail(std::string(name) + " " + shape_str(v) + (def > 0 ? " must be positive" : " must not be negative"));
    return v;
  }

  // Conv / ConvTranspose, 2-D; 1-D runs as 2-D with a height of 1.
  void lower_conv(const NodeAttrs& a, bool transpose) {
    BVal x = need_batched(0);
    const CVal& W = need_const(1, "the weight");
    const int rank = static_cast<int>(x.shape.size());
    if (rank != 3 && rank != 4) fail("only 1-D and 2-D convolutions are supported, the input is " + shape_str(x.shape));
    need_image(x, rank, transpose ? "ConvTranspose" : "Conv");
    const int sp = rank - 2;
    if (static_cast<int>(W.shape.size()) != rank) fail("weight " + shape_str(W.shape) + " does not match the input");
    Shape k(W.shape.begin() + 2, W.shape.end());
    for (int64_t e : W.shape)
      if (e <= 0) fail("weight " + shape_str(W.shape) + " has an empty dim");
    const std::vector<int64_t> ks = a.ints("kernel_shape");
    if (!ks.empty() && Shape(ks) != k) fail("kernel_shape " + shape_str(ks) + " differs from the weight's " + shape_str(k));
    const std::vector<int64_t> s = spatial(a, "strides", sp, 1), d = spatial(a, "dilations", sp, 1);
    const Shape in_sp(x.shape.begin() + 2, x.shape.end());
    if (transpose && a.has("output_shape")) fail("output_shape is not supported; give pads and output_padding");
    std::vector<int64_t> p = transpose ? std::vector<int64_t>{} : sym_pads(a, sp, in_sp, k, s, d);
    if (transpose) {
      std::vector<int64_t> pads = a.ints("pads");
      if (a.s("auto_pad", "NOTSET") != "NOTSET") fail("auto_pad is not supported for ConvTranspose");
      if (pads.empty()) pads.assign(2 * sp, 0);
      if (static_cast<int>(pads.size()) != 2 * sp) fail("pads must have " + std::to_string(2 * sp) + " entries");
      for (int i = 0; i < sp; ++i) {
        if (pads[i] != pads[i + sp]) fail("asymmetric pads are not supported");
        p.push_back(pads[i]);
      }
    }
    std::vector<int64_t> op = transpose ? spatial(a, "output_padding", sp, 0) : std::vector<int64_t>{};
    const int64_t group = a.i("group", 1);
    std::map<std::string, Tensor> params{{"weight", param_of(1, "the weight")}};
    if (const Val* vb = in_val(2)) {
      if (!vb->is_const) fail("the bias must be a constant");
      params["bias"] = tensor(vb->c);
    }
    auto pair = [&](const std::vector<int64_t>& v, int64_t one) {
      return sp == 2 ? v : std::vector<int64_t>{one, v[0]};
    };
    std::string in_ref = x.ref;
    if (sp == 1) {
      Tensor& w = params["weight"];
      w.shape.insert(w.shape.begin() + 2, 1);
      in_ref = emit("reshape", {x.ref}, {{"shape", Shape{x.shape[1], 1, x.shape[2]}}}, {}, ".as2d");
    }
    std::map<std::string, AttrValue> at{{"stride", pair(s, 1)}, {"padding", pair(p, 0)},
                                        {"dilation", pair(d, 1)}, {"groups", group}};
    // Output spatial extents (ONNX formulas).
    BVal out = x;
    const int64_t co = transpose ? W.shape[1] * group : W.shape[0];
    out.shape[1] = co;
    for (int i = 0; i < sp; ++i) {
      int64_t o;
      if (transpose) o = (in_sp[i] - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + op[i] + 1;
      else o = (in_sp[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) / s[i] + 1;
      if (o <= 0) fail("the output would be empty");
      out.shape[2 + i] = o;
    }
    if (transpose) at["output_padding"] = pair(op, 0);
    const std::string conv = emit(transpose ? "conv_transpose2d" : "conv2d", {in_ref}, at, std::move(params));
    out.ref = sp == 1 ? emit("reshape", {conv}, {{"shape", Shape{co, out.shape[2]}}}, {}, ".as1d") : conv;
    set_out(0, out);
  }

  void lower_batchnorm(const NodeAttrs& a) {
    BVal x = need_batched(0);
    if (a.i("training_mode", 0) != 0) fail("training_mode is not supported (divscope runs inference)");
    for (int k = 1; k < node_->output_size(); ++k)
      if (!node_->output(k).empty() && consumers_[node_->output(k)] > 0)
        fail("the running statistics outputs are used (training mode)");
    const int rank = static_cast<int>(x.shape.size());
    if (rank < 2 || rank > 4 || x.lay.axis != 0 || !plain(x))
      fail("BatchNormalization needs [N, C], [N, C, L] or [N, C, H, W] with the batch first");
    std::map<std::string, Tensor> params{{"weight", tensor(need_const(1, "scale"))},
                                         {"bias", tensor(need_const(2, "B"))},
                                         {"running_mean", tensor(need_const(3, "mean"))},
                                         {"running_var", tensor(need_const(4, "var"))}};
    std::string ref = x.ref;
    if (rank != 4) ref = emit("reshape", {x.ref}, {{"shape", Shape{x.shape[1], rank == 3 ? x.shape[2] : 1, 1}}}, {}, ".as2d");
    ref = emit("batchnorm2d", {ref}, {{"eps", a.f("epsilon", 1e-5)}}, std::move(params));
    if (rank != 4) ref = emit("reshape", {ref}, {{"shape", Shape(x.shape.begin() + 1, x.shape.end())}}, {}, ".back");
    x.ref = ref;
    set_out(0, x);
  }

  void lower_instancenorm(const NodeAttrs& a) {
    BVal x = need_batched(0);
    if (x.shape.size() < 3 || x.lay.axis != 0 || !plain(x))
      fail("InstanceNormalization needs [N, C, ...] with the batch first");
    std::map<std::string, Tensor> params{{"weight", tensor(need_const(1, "scale"))},
                                         {"bias", tensor(need_const(2, "B"))}};
    x.ref = emit("groupnorm", {x.ref}, {{"num_groups", x.shape[1]}, {"eps", a.f("epsilon", 1e-5)}},
                 std::move(params));
    set_out(0, x);
  }

  void lower_layernorm(const NodeAttrs& a) {
    BVal x = need_batched(0);
    const int64_t r = static_cast<int64_t>(x.shape.size());
    const int64_t ax = norm_axis(a.i("axis", -1), r, failer());
    if (ax <= x.lay.axis) fail("LayerNormalization over the batch axis (axis " + std::to_string(ax) + ")");
    for (int k = 1; k < node_->output_size(); ++k)
      if (!node_->output(k).empty() && consumers_[node_->output(k)] > 0)
        fail("the Mean / InvStdDev outputs are used (training)");
    const Shape ns(x.shape.begin() + ax, x.shape.end());
    std::map<std::string, Tensor> params;
    auto param = [&](int k, const char* key) {
      const Val* v = in_val(k);
      if (!v) return;
      if (!v->is_const) fail(std::string(key) + " must be a constant");
      CVal c = v->c;
      const Shape want = ns;
      if (c.shape != want) {
        if (broadcast_shapes({c.shape, want}, failer()) != want)
          fail(std::string(key) + " of shape " + shape_str(c.shape) + " does not fit " + shape_str(want));
        c = broadcast_to(c, want, failer());
      }
      params[key] = tensor(c);
    };
    param(1, "weight");
    param(2, "bias");
    x.ref = emit("layernorm", {x.ref}, {{"normalized_shape", ns}, {"eps", a.f("epsilon", 1e-5)}},
                 std::move(params));
    set_out(0, x);
  }

  void lower_softmax(const NodeAttrs& a, const std::string& op) {
    BVal x = need_batched(0);
    const int64_t r = static_cast<int64_t>(x.shape.size());
    const int64_t ax = norm_axis(a.i("axis", opset_ >= 13 ? -1 : 1), r, failer());
    if (opset_ >= 13 || ax == r - 1) {
      x.ref = emit(op, {x.ref}, {{"axis", dax(x, ax, op)}});
      set_out(0, x);
      return;
    }
    // Opsets < 13: the input is coerced to 2-D [prod(:axis), prod(axis:)] and normalized per row.
    if (x.lay.axis >= ax) fail("Softmax (opset < 13) over dims that include the batch axis");
    BVal flat = x;
    flat.shape.assign(x.shape.begin(), x.shape.begin() + ax);
    flat.shape.push_back(prod(x.shape, ax, r));
    flat = reshape_to(x, flat.shape, x.lay, ".coerce2d");
    flat.ref = emit(op, {flat.ref}, {{"axis", int64_t{-1}}});
    BVal out = reshape_to(flat, x.shape, x.lay, ".back");
    set_out(0, out);
  }

  void lower_reduce(const NodeAttrs& a, const std::string& op) {
    BVal x = need_batched(0);
    const int64_t r = static_cast<int64_t>(x.shape.size());
    std::vector<int64_t> axes;
    const bool axes_input = opset_ >= 18 || (op == "ReduceSum" && opset_ >= 13);
    if (axes_input) {
      if (in_val(1)) axes = as_ints(need_const(1, "axes"));
    } else {
      axes = a.ints("axes");
    }
    if (axes.empty()) {
      if (a.i("noop_with_empty_axes", 0)) {
        set_out(0, x, false);
        return;
      }
      fail(op + " over every axis reduces the samples together");
    }
    const bool keep = a.i("keepdims", 1) != 0;
    std::vector<int64_t> dax_list;
    std::vector<bool> red(r, false);
    for (int64_t v : axes) red[norm_axis(v, r, failer())] = true;
    BVal out = x;
    out.shape.clear();
    int64_t before = 0;
    for (int64_t d = 0; d < r; ++d) {
      if (red[d]) {
        dax_list.push_back(dax(x, d, op));
        if (d < x.lay.axis) ++before;
        if (keep) out.shape.push_back(1);
      } else {
        out.shape.push_back(x.shape[d]);
      }
    }
    if (!keep) out.lay.axis -= before;
    static const std::map<std::string, std::string> m = {
        {"ReduceMean", "reduce_mean"}, {"ReduceSum", "reduce_sum"}, {"ReduceMax", "reduce_max"}};
    out.ref = emit(m.at(op), {x.ref}, {{"axes", dax_list}, {"keepdim", int64_t{keep}}});
    set_out(0, out);
  }

  void lower_pool(const NodeAttrs& a, bool is_max) {
    BVal x = need_batched(0);
    need_image(x, 4, is_max ? "MaxPool" : "AveragePool");
    if (is_max && node_->output_size() > 1 && !node_->output(1).empty() && consumers_[node_->output(1)] > 0)
      fail("the Indices output is not supported");
    const std::vector<int64_t> k = a.ints("kernel_shape");
    if (k.size() != 2 || k[0] <= 0 || k[1] <= 0) fail("kernel_shape must be 2 positive entries");
    const std::vector<int64_t> s = spatial(a, "strides", 2, 1), d = spatial(a, "dilations", 2, 1);
    if (!is_max && (d[0] != 1 || d[1] != 1)) fail("dilations are not supported for AveragePool");
    const Shape in_sp(x.shape.begin() + 2, x.shape.end());
    const std::vector<int64_t> p = sym_pads(a, 2, in_sp, k, s, d);
    const int64_t ceil = a.i("ceil_mode", 0);
    if (a.i("storage_order", 0) != 0) fail("storage_order 1 is not supported");
    std::map<std::string, AttrValue> at{{"kernel_size", k}, {"stride", s}, {"padding", p}, {"ceil_mode", ceil}};
    if (is_max) at["dilation"] = d;
    else at["count_include_pad"] = a.i("count_include_pad", 0);
    for (int i = 0; i < 2; ++i) {
      const int64_t num = in_sp[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1;
      int64_t o = (ceil ? (num + s[i] - 1) / s[i] : num / s[i]) + 1;
      if (ceil && (o - 1) * s[i] >= in_sp[i] + p[i]) --o;
      x.shape[2 + i] = o;
    }
    x.ref = emit(is_max ? "maxpool2d" : "avgpool2d", {x.ref}, at);
    set_out(0, x);
  }

  void lower_resize(const NodeAttrs& a, const std::string& op) {
    BVal x = need_batched(0);
    need_image(x, 4, op.c_str());
    const std::string mode = a.s("mode", "nearest");
    if (mode != "nearest") fail("mode '" + mode + "' is not supported (divscope upsamples nearest)");
    std::vector<double> scales;
    if (op == "Upsample") {
      scales = opset_ >= 9 ? need_const(1, "scales").v : std::vector<double>{};
    } else {
      const std::string ctm = a.s("coordinate_transformation_mode", "half_pixel");
      const std::string nm = a.s("nearest_mode", "round_prefer_floor");
      const bool ok = (ctm == "asymmetric" && nm == "floor") || ctm == "half_pixel" || ctm == "pytorch_half_pixel";
      if (!ok)
        fail("coordinate_transformation_mode '" + ctm + "' with nearest_mode '" + nm +
             "' is not supported (asymmetric + floor, or half_pixel: integer factors only)");
      const int si = opset_ >= 11 ? 2 : 1;
      const Val* vs = in_val(si);
      if (vs && vs->is_const && !vs->c.v.empty()) scales = vs->c.v;
      else if (const Val* vz = in_val(3)) {
        if (!vz->is_const) fail("sizes must be a constant");
        for (size_t k = 0; k < vz->c.v.size() && k < 4; ++k) scales.push_back(vz->c.v[k] / static_cast<double>(x.shape[k]));
      }
    }
    if (scales.size() != 4 || scales[0] != 1 || scales[1] != 1)
      fail("only scales [1, 1, fh, fw] are supported");
    std::vector<int64_t> f;
    for (int i = 2; i < 4; ++i) {
      if (scales[i] < 1 || scales[i] != std::floor(scales[i]) || scales[i] > 1024)
        fail("scale " + std::to_string(scales[i]) + " is not a positive integer factor");
      f.push_back(static_cast<int64_t>(scales[i]));
      x.shape[i] *= f.back();
    }
    x.ref = emit("upsample_nearest2d", {x.ref}, {{"scale_factor", f}});
    set_out(0, x);
  }

  void lower_concat(const NodeAttrs& a) {
    std::vector<const Val*> vals;
    const Val* like = nullptr;
    std::vector<int> keep;
    for (int k = 0; k < node_->input_size(); ++k) {
      const Val& v = need(k);
      if (v.is_const ? checked_numel(v.c.shape, failer()) == 0 : v.empty) continue;   // adds nothing
      keep.push_back(k);
    }
    for (int k : keep) {
      vals.push_back(&need(k));
      if (!vals.back()->is_const) {
        need_batched(k);
        if (!like) like = vals.back();
      }
    }
    if (!like) fail("every input is empty or a constant");
    const BVal& b0 = like->b;
    const int64_t r = static_cast<int64_t>(b0.shape.size());
    const int64_t ax = norm_axis(a.i("axis", 0), r, failer());
    const int64_t dx = dax(b0, ax, "Concat");
    BVal out = b0;
    out.shape[ax] = 0;
    std::vector<std::string> refs;
    for (size_t q = 0; q < keep.size(); ++q) {
      const int k = keep[q];
      const Val& v = *vals[q];
      const Shape& s = v.is_const ? v.c.shape : v.b.shape;
      if (static_cast<int64_t>(s.size()) != r) fail("Concat of different ranks");
      out.shape[ax] += s[ax];
      if (!v.is_const) {
        if (!(v.b.lay == b0.lay)) fail("operands hold the batch in different places");
        refs.push_back(v.b.ref);
        continue;
      }
      BVal cl = b0;
      cl.shape = s;
      cl.shape[b0.lay.axis] = b0.shape[b0.lay.axis];
      const std::string c = const_input(v.c, cl, node_->input(k));
      const Shape ps = per_sample(cl);
      refs.push_back(emit("expand", {c, b0.ref}, {{"shape", ps}}, {}, ".expand" + std::to_string(k)));
    }
    if (refs.size() == 1) {   // the others were empty
      out.ref = refs[0];
      set_out(0, out, false);
      return;
    }
    out.ref = emit("concat", refs, {{"axis", dx}});
    set_out(0, out);
  }

  void lower_split(const NodeAttrs& a) {
    const BVal& x = need_batched(0);
    const int64_t r = static_cast<int64_t>(x.shape.size());
    const int64_t ax = norm_axis(a.i("axis", 0), r, failer());
    const int64_t dx = dax(x, ax, "Split");
    std::vector<int64_t> sizes = opset_ >= 13 ? (in_val(1) ? as_ints(need_const(1, "split")) : std::vector<int64_t>{})
                                              : a.ints("split");
    const int64_t nout = node_->output_size();
    if (sizes.empty()) {
      if (x.shape[ax] % nout) fail("Split of " + std::to_string(x.shape[ax]) + " into " + std::to_string(nout) + " equal parts");
      sizes.assign(nout, x.shape[ax] / nout);
    }
    if (static_cast<int64_t>(sizes.size()) != nout) fail("split sizes and outputs differ in number");
    int64_t start = 0;
    for (int64_t k = 0; k < nout; ++k) {
      if (sizes[k] <= 0) fail("split sizes must be positive");
      BVal o = x;
      o.shape[ax] = sizes[k];
      if (!node_->output(static_cast<int>(k)).empty()) {
        o.ref = emit("slice", {x.ref}, {{"axis", dx}, {"start", start}, {"end", start + sizes[k]}}, {},
                     ":" + std::to_string(k));
        set_out(static_cast<int>(k), o);
      }
      start += sizes[k];
    }
    if (start != x.shape[ax]) fail("split sizes add up to " + std::to_string(start) + ", the axis has " + std::to_string(x.shape[ax]));
  }

  void lower_slice(const NodeAttrs& a) {
    BVal x = need_batched(0);
    const int64_t r = static_cast<int64_t>(x.shape.size());
    std::vector<const CVal*> cin{nullptr};
    for (int k = 1; k < 5; ++k) {
      const Val* v = in_val(k);
      if (v && !v->is_const) fail("Slice parameters (input " + std::to_string(k) + ") must be constants");
      cin.push_back(v ? &v->c : nullptr);
    }
    const SliceArgs sa = slice_args(a, opset_, cin);
    const std::vector<int64_t>&starts = sa.starts, &ends = sa.ends, &axes = sa.axes, &steps = sa.steps;
    bool any = false;
    for (size_t k = 0; k < starts.size(); ++k) {
      const int64_t ax = norm_axis(axes[k], r, failer());
      const int64_t dim = x.shape[ax], step = steps[k];
      if (step <= 0) fail("negative or zero steps are not supported");
      int64_t s = starts[k] < 0 ? std::max<int64_t>(starts[k], -dim) + dim : std::min(starts[k], dim);
      int64_t e = ends[k] < 0 ? std::max<int64_t>(ends[k], -dim) + dim : std::min(ends[k], dim);
      if (s == 0 && e == dim && step == 1) continue;
      if (s >= e) {
        Val v;
        v.b = x;
        v.b.shape[ax] = 0;
        v.empty = true;
        vals_[node_->output(0)] = v;
        return;
      }
      const int64_t dx = dax(x, ax, "Slice");
      x.ref = emit("slice", {x.ref}, {{"axis", dx}, {"start", s}, {"end", e}, {"step", step}}, {},
                   any ? ".axis" + std::to_string(ax) : "");
      x.shape[ax] = (e - s + step - 1) / step;
      any = true;
    }
    set_out(0, x, any);
  }

  void lower_gather(const NodeAttrs& a) {
    const Val& data = need(0);
    const Val& idx = need(1);
    if (data.is_const) {
      // Embedding: a constant table indexed by an integer graph input.
      const BVal& ix = idx.b;
      if (!ix.is_int || m_.find_input(ix.ref) < 0)
        fail("Gather from a constant needs integer indices that are a graph input (an embedding)");
      if (a.i("axis", 0) != 0 || data.c.shape.size() != 2)
        fail("Gather from a constant is supported as an embedding (axis 0 of a [V, D] table)");
      BVal out = ix;
      out.is_int = false;
      out.shape.push_back(data.c.shape[1]);
      out.ref = emit("embedding", {ix.ref}, {}, {{"weight", param_of(0, "the table")}});
      set_out(0, out);
      return;
    }
    const BVal& x = need_batched(0);
    if (!idx.is_const) fail("Gather with indices that depend on the inputs is not supported");
    const int64_t r = static_cast<int64_t>(x.shape.size());
    const int64_t ax = norm_axis(a.i("axis", 0), r, failer());
    const int64_t dx = dax(x, ax, "Gather");
    std::vector<int64_t> ix = as_ints(idx.c);
    for (int64_t& i : ix) {
      if (i < -x.shape[ax] || i >= x.shape[ax]) fail("index " + std::to_string(i) + " out of range");
      if (i < 0) i += x.shape[ax];
    }
    if (idx.c.shape.size() > 1) fail("Gather with indices of rank > 1 from an activation is not supported");
    std::vector<std::string> parts;
    size_t k = 0;
    while (k < ix.size()) {
      size_t e = k + 1;
      while (e < ix.size() && ix[e] == ix[e - 1] + 1) ++e;
      parts.push_back(emit("slice", {x.ref}, {{"axis", dx}, {"start", ix[k]}, {"end", ix[e - 1] + 1}}, {},
                           ix.size() == 1 ? "" : ".part" + std::to_string(parts.size())));
      k = e;
    }
    BVal out = x;
    out.shape[ax] = static_cast<int64_t>(ix.size());
    out.ref = parts.size() == 1 ? parts[0] : emit("concat", parts, {{"axis", dx}});
    if (idx.c.shape.empty()) {
      // A scalar index drops the axis.
      Shape s = x.shape;
      s.erase(s.begin() + ax);
      Layout l = x.lay;
      if (ax < l.axis) --l.axis;
      out = reshape_to(out, s, l, ".squeeze");
    }
    set_out(0, out);
  }

  void lower_transpose(const NodeAttrs& a) {
    const BVal& x = need_batched(0);
    const int64_t r = static_cast<int64_t>(x.shape.size());
    std::vector<int64_t> perm = a.ints("perm");
    if (perm.empty())
      for (int64_t d = r - 1; d >= 0; --d) perm.push_back(d);
    if (static_cast<int64_t>(perm.size()) != r) fail("perm has the wrong length");
    std::vector<bool> seen(r, false);
    for (int64_t& p : perm) {
      p = norm_axis(p, r, failer());
      if (seen[p]) fail("perm is not a permutation");
      seen[p] = true;
    }
    std::vector<int64_t> dims{0};
    BVal out = x;
    for (int64_t p = 0; p < r; ++p) {
      for (int64_t g : dax_group(x, perm[p])) dims.push_back(g);
      out.shape[p] = x.shape[perm[p]];
      if (perm[p] == x.lay.axis) out.lay.axis = p;
    }
    bool identity = true;
    for (size_t k = 0; k < dims.size(); ++k) identity &= dims[k] == static_cast<int64_t>(k);
    if (!identity) out.ref = emit("permute", {x.ref}, {{"dims", dims}});
    set_out(0, out, !identity);
  }

  void lower_reshape(const NodeAttrs& a, const std::string& op) {
    const BVal& x = need_batched(0);
    Shape s;
    if (op == "Reshape") {
      s = reshape_target(x.shape, as_ints(need_const(1, "shape")), a.i("allowzero", 0) != 0, failer());
    } else {
      const int64_t r = static_cast<int64_t>(x.shape.size());
      int64_t ax = a.i("axis", 1);
      if (ax < 0) ax += r;
      if (ax < 0 || ax > r) fail("axis out of range");
      s = {prod(x.shape, 0, ax), prod(x.shape, ax, r)};
    }
    const Layout l = find_layout(x, s);
    BVal out = reshape_to(x, s, l);
    set_out(0, out, out.ref != x.ref);
  }

  void lower_squeeze(const NodeAttrs& a, bool squeeze) {
    const BVal& x = need_batched(0);
    const int64_t r = static_cast<int64_t>(x.shape.size());
    std::vector<int64_t> axes = opset_ >= 13 ? (in_val(1) ? as_ints(need_const(1, "axes")) : std::vector<int64_t>{})
                                             : a.ints("axes");
    Shape s;
    Layout l = x.lay;
    if (squeeze) {
      std::vector<bool> drop(r, false);
      if (axes.empty()) {
        for (int64_t d = 0; d < r; ++d) drop[d] = x.shape[d] == 1 && d != x.lay.axis;
      } else {
        for (int64_t v : axes) {
          const int64_t d = norm_axis(v, r, failer());
          if (d == x.lay.axis) fail("Squeeze of the batch axis");
          if (x.shape[d] != 1) fail("Squeeze of dim " + std::to_string(d) + " of size " + std::to_string(x.shape[d]));
          drop[d] = true;
        }
      }
      for (int64_t d = 0; d < r; ++d) {
        if (!drop[d]) s.push_back(x.shape[d]);
        else if (d < x.lay.axis) --l.axis;
      }
    } else {
      const int64_t nr = r + static_cast<int64_t>(axes.size());
      std::vector<bool> ins(nr, false);
      for (int64_t v : axes) {
        const int64_t d = norm_axis(v, nr, failer());
        if (ins[d]) fail("repeated axis");
        ins[d] = true;
      }
      int64_t k = 0;
      for (int64_t d = 0; d < nr; ++d) {
        if (ins[d]) {
          s.push_back(1);
        } else {
          if (k == x.lay.axis) l.axis = d;
          s.push_back(x.shape[k++]);
        }
      }
    }
    BVal out = reshape_to(x, s, l);
    set_out(0, out, out.ref != x.ref);
  }

  // Constant padding as a concat of constant blocks (expanded to the batch) around the input;
  // negative pads crop (a slice).
  void lower_pad(const NodeAttrs& a) {
    BVal cur = need_batched(0);
    const int64_t r = static_cast<int64_t>(cur.shape.size());
    const std::string mode = a.s("mode", "constant");
    if (mode != "constant") fail("mode '" + mode + "' is not supported (divscope pads with a constant)");
    std::vector<int64_t> pads;
    double value = 0;
    if (opset_ >= 11) {
      pads = as_ints(need_const(1, "pads"));
      if (const Val* v = in_val(2)) {
        if (!v->is_const || v->c.v.size() != 1) fail("constant_value must be a constant scalar");
        value = v->c.v[0];
      }
      if (const Val* ax = in_val(3)) {
        if (!ax->is_const) fail("axes must be a constant");
        const std::vector<int64_t> axes = as_ints(ax->c);
        if (pads.size() != 2 * axes.size()) fail("pads and axes differ in length");
        std::vector<int64_t> full(2 * r, 0);
        for (size_t k = 0; k < axes.size(); ++k) {
          const int64_t d = norm_axis(axes[k], r, failer());
          full[d] = pads[k];
          full[d + r] = pads[k + axes.size()];
        }
        pads = full;
      }
    } else {
      pads = a.ints("pads");
      value = a.f("value", 0.0);
    }
    if (static_cast<int64_t>(pads.size()) != 2 * r) fail("pads must have " + std::to_string(2 * r) + " entries");
    if (std::isnan(value)) fail("a NaN pad value is not supported");
    bool any = false;
    for (int64_t d = 0; d < r; ++d) {
      int64_t before = pads[d], after = pads[d + r];
      if (before == 0 && after == 0) continue;
      const int64_t dd = dax(cur, d, "Pad");
      const std::string tag = ".pad" + std::to_string(d);
      if (before < 0 || after < 0) {
        const int64_t s = std::max<int64_t>(-before, 0), e = cur.shape[d] - std::max<int64_t>(-after, 0);
        if (s >= e) fail("negative pads crop axis " + std::to_string(d) + " to nothing");
        cur.ref = emit("slice", {cur.ref}, {{"axis", dd}, {"start", s}, {"end", e}}, {}, tag + ".crop");
        cur.shape[d] = e - s;
        before = std::max<int64_t>(before, 0);
        after = std::max<int64_t>(after, 0);
        any = true;
        if (before == 0 && after == 0) continue;
      }
      std::vector<std::string> parts;
      auto block = [&](int64_t ext, const char* side) {
        BVal blk = cur;
        blk.shape[d] = ext;
        CVal c;
        c.shape = Shape(r, 1);
        c.v = {value};
        const std::string k = const_input(c, blk, base_name() + ":pad_value");
        parts.push_back(emit("expand", {k, cur.ref}, {{"shape", per_sample(blk)}}, {}, tag + side));
      };
      if (before > 0) block(before, ".before");
      parts.push_back(cur.ref);
      if (after > 0) block(after, ".after");
      cur.ref = emit("concat", parts, {{"axis", dd}}, {}, tag);
      cur.shape[d] += before + after;
      any = true;
    }
    set_out(0, cur, any);
  }

  void lower_expand() {
    const BVal& x = need_batched(0);
    const std::vector<int64_t> target = as_ints(need_const(1, "shape"));
    BVal out = x;
    out.shape = broadcast_shapes({x.shape, Shape(target)}, failer());
    out.lay.axis += static_cast<int64_t>(out.shape.size() - x.shape.size());
    if (out.shape[out.lay.axis] != x.shape[x.lay.axis]) fail("Expand along the batch axis");
    const std::string src = operands({&need(0)}, out)[0];
    if (per_sample(out) == per_sample(x)) {
      out.ref = src;
      set_out(0, out, false);
      return;
    }
    out.ref = emit("expand", {src}, {{"shape", per_sample(out)}});
    set_out(0, out);
  }

  const std::string& file_;
  onnx::ModelProto& mp_;
  onnx::GraphProto& g_;
  const OnnxImportOptions& opt_;
  int64_t opset_ = 0;
  int64_t n_ = kImportBatch;
  std::map<std::string, Val> vals_;
  std::set<std::string> initializer_names_, graph_outputs_, used_;
  std::map<std::string, int> consumers_;
  std::map<std::string, std::vector<int>> readers_;   // value -> the nodes that read it
  std::map<const onnx::NodeProto*, int> node_idx_;
  std::map<std::string, int> producer_;               // value -> the node that writes it
  struct TanhGelu {
    std::string x;
    std::vector<int> nodes;
    int last = 0;
  };
  std::map<int, TanhGelu> tanh_gelu_;                 // by the pattern's first node
  std::map<std::string, int> layer_of_;
  std::map<std::string, Shape> expected_ps_;
  std::set<int> skip_;
  Model m_;
  const onnx::NodeProto* node_ = nullptr;
  int node_i_ = 0;
  int folded_ = 0, fused_ = 0, aliased_ = 0;
  // DIVSCOPE_ONNX_FUSE=0 runs LayerNorm and GELU decompositions node by node (docs/onnx.md).
  const bool fuse_patterns_ = [] {
    const char* e = std::getenv("DIVSCOPE_ONNX_FUSE");
    return !(e && std::string(e) == "0");
  }();
};

bool is_hdf5(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char sig[8] = {};
  f.read(sig, 8);
  return f.gcount() == 8 && std::memcmp(sig, "\x89HDF\r\n\x1a\n", 8) == 0;
}

}  // namespace

bool looks_like_onnx(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  unsigned char b[2] = {};
  f.read(reinterpret_cast<char*>(b), 2);
  if (f.gcount() < 2) return false;
  // A ModelProto starts with a field key: ir_version (field 1, varint: 0x08), or another of its
  // fields (opset_import 8, producer 2-5, doc 6, graph 7, metadata 14, functions 25).
  const unsigned field = b[0] >> 3, wire = b[0] & 7;
  if (b[0] == 0x08) return true;
  return (wire == 2 && field >= 2 && field <= 14) && !is_hdf5(path);
}

namespace {

// Parses a serialized ModelProto held in memory (a mapped file, or the fuzzer's bytes).
void parse_model_proto(const uint8_t* data, size_t size, const std::string& path, onnx::ModelProto& mp) {
  if (size == 0 || size > static_cast<size_t>(std::numeric_limits<int>::max()))
    throw InputError(path, "/", size == 0 ? "empty file" : "larger than 2 GiB, the protobuf limit (ONNX keeps such weights as external data, which divscope does not read)");
  google::protobuf::io::CodedInputStream cin(data, static_cast<int>(size));
  cin.SetRecursionLimit(64);
  if (!(mp.ParseFromCodedStream(&cin) && cin.ConsumedEntireMessage()))
    throw InputError(path, "/", "not a valid ONNX model (the protobuf does not parse: truncated or damaged)");
}

Model import_model_proto(const std::string& path, onnx::ModelProto& mp, const OnnxImportOptions& opt) {
  if (!mp.has_graph() || mp.graph().node_size() == 0)
    throw InputError(path, "graph", "the ONNX model has no graph or no nodes");
  try {
    return Importer(path, mp, opt).run();
  } catch (const std::length_error& e) {
    throw InputError(path, "graph", std::string("sizes out of range: ") + e.what());
  } catch (const std::out_of_range& e) {
    throw InputError(path, "graph", std::string("value out of range: ") + e.what());
  }
}

}  // namespace

Model read_onnx_model(const std::string& path, const OnnxImportOptions& opt) {
  // The file is mapped and parsed as one array: protobuf then allocates each initializer's bytes
  // at their exact size (a stream parse grows them piecewise, up to twice the file), and the
  // mapping is dropped before the weights are converted.
  onnx::ModelProto mp;
  {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw InputError(path + ": cannot open: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      throw InputError(path + ": not a regular file");
    }
    const size_t size = static_cast<size_t>(st.st_size);
    if (size == 0 || size > static_cast<size_t>(std::numeric_limits<int>::max())) {
      ::close(fd);
      parse_model_proto(nullptr, size, path, mp);   // throws the size's message
    }
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) throw InputError(path + ": cannot map: " + std::strerror(errno));
    try {
      parse_model_proto(static_cast<const uint8_t*>(p), size, path, mp);
    } catch (...) {
      ::munmap(p, size);
      throw;
    }
    ::munmap(p, size);
  }
  return import_model_proto(path, mp, opt);
}

Model read_onnx_model_bytes(const void* data, size_t size, const std::string& name,
                            const OnnxImportOptions& opt) {
  onnx::ModelProto mp;
  parse_model_proto(static_cast<const uint8_t*>(data), size, name, mp);
  return import_model_proto(name, mp, opt);
}

Model load_model(const std::string& path, const std::string& recording) {
  if (is_hdf5(path) || !looks_like_onnx(path)) return read_model(path);
  OnnxImportOptions opt;
  if (!recording.empty()) opt.input_shapes = recording_sample_shapes(recording);
  return read_onnx_model(path, opt);
}

}  // namespace divscope
