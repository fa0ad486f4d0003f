// The HTML report: a self-contained file with one plotted line per mode, the planted divergence
// marked, every model string escaped, and a clear error when the file cannot be written.
#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>
#include <sstream>

#include "analysis/analysis.h"
#include "errors.h"
#include "io/h5io.h"
#include "report/report.h"

using namespace divscope;

namespace {

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int count(const std::string& s, const std::string& what) {
  int n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + what.size())) ++n;
  return n;
}

// The text of the first <svg> element with the given class.
std::string svg_of(const std::string& html, const std::string& cls) {
  const size_t at = html.find("class=\"" + cls + "\"");
  if (at == std::string::npos) return "";
  const size_t b = html.rfind("<svg", at);
  return html.substr(b, html.find("</svg>", b) - b);
}

// The <tr> of a table row whose name cell is `name`.
std::string row_of(const std::string& html, const std::string& name) {
  const size_t at = html.find("<td>" + name + "</td>");
  if (at == std::string::npos) return "";
  const size_t b = html.rfind("<tr", at);
  return html.substr(b, html.find("</tr>", at) - b);
}

class Html : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = std::string(DIVSCOPE_SOURCE_DIR) + "/data/";
    model_ = read_model(dir + "planted_fp16_overflow.model.h5");
    AnalysisOptions opt;
    opt.modes = {Mode::fp32, Mode::fp16, Mode::bf16};
    auto backend = make_cpu_backend();
    result_ = analyze(model_, dir + "planted_fp16_overflow.recording.h5", *backend, opt);
    ctx_.model = &model_;
    ctx_.model_path = dir + "planted_fp16_overflow.model.h5";
    ctx_.recording_path = dir + "planted_fp16_overflow.recording.h5";
    ctx_.backend = "cpu";
    ctx_.environment = {{"host", {{"hostname", "box"}}},
                        {"cuda", {{"available", false}, {"reason", "no driver"}}}};
    // One file per process: ctest -j runs this suite's tests side by side.
    path_ = ::testing::TempDir() + "divscope_test_report_" + std::to_string(getpid()) + ".html";
  }
  Model model_;
  AnalysisResult result_;
  ReportContext ctx_;
  std::string path_;
};

}  // namespace

TEST_F(Html, SelfContainedWithOneLinePerModeAndThePlantedLayerMarked) {
  write_html(result_, ctx_, path_);
  const std::string html = read_text(path_);
  ASSERT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(html.find("</html>"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_NE(html.find("no CUDA device: no driver"), std::string::npos);
  EXPECT_NE(html.find("badge fail\">FAIL"), std::string::npos);

  for (const char* cls : {"chained", "isolated"}) {
    SCOPED_TRACE(cls);
    const std::string svg = svg_of(html, cls);
    ASSERT_FALSE(svg.empty());
    EXPECT_EQ(count(svg, "<polyline"), 3);
    for (const char* mode : {"fp32", "fp16", "bf16"})
      EXPECT_EQ(count(svg, std::string("class=\"mode-") + mode + "\""), 1) << mode;
    // Coordinates are numbers even where rel_l2 is 0 or not finite.
    EXPECT_EQ(svg.find("nan,"), std::string::npos);
    EXPECT_EQ(svg.find("inf,"), std::string::npos);
  }
  // fp16's first divergent layer (and culprit) is the planted `amplify` (data/EXPECTED.md):
  // a dashed line in the plot, the highlighted table row, the summary.
  EXPECT_NE(svg_of(html, "chained").find("fp16: first divergent layer amplify (#2)"), std::string::npos);
  EXPECT_NE(svg_of(html, "isolated").find("fp16: culprit amplify (#2)"), std::string::npos);
  EXPECT_NE(html.find("fp16: FAIL — first divergent layer <b>amplify</b> (#2)"), std::string::npos);
  EXPECT_NE(html.find("fp32: PASS"), std::string::npos);
  const size_t fp16 = html.find("<h2 id=\"mode-fp16\">");
  ASSERT_NE(fp16, std::string::npos);
  const std::string row = row_of(html.substr(fp16), "amplify");
  EXPECT_NE(row.find("class=\"div first\""), std::string::npos) << row;
  EXPECT_NE(row.find("DIVERGED"), std::string::npos) << row;
  EXPECT_NE(row.find("[first] [culprit]"), std::string::npos) << row;
  EXPECT_NE(html.find("Divergent samples"), std::string::npos);
}

TEST_F(Html, EscapesNamesAndPathsFromTheModel) {
  Model renamed = model_;
  renamed.name = "net<1>";
  renamed.layers[2].name = "amp<lify>&\"x\"";
  ctx_.model = &renamed;
  ctx_.recording_path = "/data/a&b<c>.h5";
  write_html(result_, ctx_, path_);
  const std::string html = read_text(path_);
  EXPECT_EQ(html.find("amp<lify>"), std::string::npos);
  EXPECT_EQ(html.find("net<1>"), std::string::npos);
  EXPECT_EQ(html.find("a&b<c>"), std::string::npos);
  EXPECT_NE(html.find("amp&lt;lify&gt;&amp;&quot;x&quot;"), std::string::npos);
  EXPECT_NE(html.find("net&lt;1&gt;"), std::string::npos);
  EXPECT_NE(html.find("/data/a&amp;b&lt;c&gt;.h5"), std::string::npos);
}

TEST_F(Html, ExactAndInfiniteErrorsStayOnTheAxis) {
  ModeResult& mr = result_.modes[0];
  mr.layers[0].chained.sum_err2 = mr.layers[0].chained.sum_ref2 = 0;     // rel_l2 0: the floor
  mr.layers[1].chained.sum_err2 = 1;
  mr.layers[1].chained.sum_ref2 = 0;                                     // rel_l2 +inf: the top band
  ctx_.environment = nlohmann::json();
  write_html(result_, ctx_, path_);
  const std::string html = read_text(path_);
  const std::string svg = svg_of(html, "chained");
  EXPECT_NE(svg.find("floor: exact (0)"), std::string::npos);
  EXPECT_NE(svg.find("rel_l2 Inf"), std::string::npos);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_NE(html.find("not captured"), std::string::npos);
}

TEST_F(Html, UnwritablePathIsAnInputErrorNamingIt) {
  const std::string bad = "/nonexistent-divscope-dir/report.html";
  try {
    write_html(result_, ctx_, bad);
    FAIL() << "no exception";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
  }
}
