// Careless or hostile models and names (issue "Hostile files, killed runs and careless paths"):
// a negative eps in batchnorm/groupnorm, control characters in names (JUnit stays parseable),
// two layer names that meet in a dump — each one line, exit 2, before any work.
#include <gtest/gtest.h>

#include <filesystem>

#include "cli_util.h"
#include "errors.h"
#include "graph/model.h"
#include "io/h5io.h"
#include "report/text.h"

using namespace divscope;
using namespace divscope::testing;

namespace {

Model norm_model(const std::string& op, double eps) {
  Model m;
  m.file = "bad.h5";
  GraphInput x;
  x.name = "x";
  x.shape = {4, 3, 3};
  x.dtype = "float32";
  m.inputs.push_back(x);
  Layer l;
  l.name = "norm";
  l.op = op;
  l.path = "/layers/0000";
  l.inputs = {"x"};
  l.attrs["eps"] = eps;
  if (op == "groupnorm") l.attrs["num_groups"] = int64_t{2};
  for (const char* p : {"weight", "bias", "running_mean", "running_var"})
    if (op == "batchnorm2d" || std::string(p) == "weight" || std::string(p) == "bias")
      l.params[p] = Tensor(Shape{4}, 1.0);
  m.layers.push_back(l);
  return m;
}

TEST(Hostile, NegativeEpsIsRefusedInEveryNorm) {
  for (const char* op : {"batchnorm2d", "groupnorm"}) {
    Model ok = norm_model(op, 1e-5);
    EXPECT_NO_THROW(validate_and_infer(ok)) << op;
    Model bad = norm_model(op, -1.0);
    try {
      validate_and_infer(bad);
      ADD_FAILURE() << op << ": a negative eps was accepted (an all-NaN reference, a PASS)";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("layer 'norm' (" + std::string(op) + "): eps must be >= 0"),
                std::string::npos) << e.what();
    }
  }
}

TEST(Hostile, ControlCharactersNeverReachTheXml) {
  const std::string s = markup_escape(std::string("conv\x01\x1b[31m<1>\ttab", 15));
  for (char c : s) EXPECT_FALSE(static_cast<unsigned char>(c) < 0x20 && c != '\t') << s;
  EXPECT_NE(s.find("\xEF\xBF\xBD"), std::string::npos);
  EXPECT_NE(s.find("&lt;1&gt;"), std::string::npos);
}

TEST(Hostile, LayerNamesThatMeetInADumpAreRefusedBeforeAnyWork) {
  // data/mlp's recording (input x [32]) through two relus named 'a/b' and 'a|b'.
  Model m;
  GraphInput x;
  x.name = "x";
  x.shape = {32};
  x.dtype = "float32";
  m.inputs.push_back(x);
  for (const char* n : {"a/b", "a|b"}) {
    Layer l;
    l.name = n;
    l.op = "relu";
    l.inputs = {m.layers.empty() ? std::string("x") : m.layers.back().name};
    m.layers.push_back(l);
  }
  const std::string model = temp_path("collide.model.h5"), dump = temp_path("collide.dump.h5");
  write_model(m, model);
  CliResult r = run_cli("run --backend cpu --modes fp32 -q --model " + model + " --recording " +
                        data_file("mlp.recording.h5") + " --dump " + dump);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("layers 'a/b' and 'a|b' have the same name in a dump"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_FALSE(std::filesystem::exists(dump));
  // Without --dump the model runs.
  r = run_cli("run --backend cpu --modes fp32 -q --model " + model + " --recording " + data_file("mlp.recording.h5"));
  EXPECT_EQ(r.code, 0) << r.err;
}

}  // namespace
