// Outputs never clobber inputs or each other, and a bad output place is found before any work
// (issue "Hostile files, killed runs and careless paths", part 2): exit 2, one line naming both
// flags, and the files on disk unchanged.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "cli_util.h"

using namespace divscope::testing;
namespace fs = std::filesystem;

namespace {

std::string copy_of(const std::string& example, const std::string& suffix) {
  const std::string p = temp_path(example + suffix);
  fs::copy_file(data_file(example + suffix), p, fs::copy_options::overwrite_existing);
  return p;
}

std::string run_mlp(const std::string& model, const std::string& rec, const std::string& extra) {
  return "run --backend cpu --modes fp32 -q --model " + model + " --recording " + rec + " " + extra;
}

TEST(OutputPaths, AnOutputThatIsAnInputIsRefusedAndTheInputKept) {
  const std::string model = copy_of("mlp", ".model.h5"), rec = copy_of("mlp", ".recording.h5");
  const std::string before = read_file(model);
  for (const char* flag : {"--report", "--dump", "--html", "--junit"}) {
    CliResult r = run_cli(run_mlp(model, rec, std::string(flag) + " " + model));
    EXPECT_EQ(r.code, 2) << flag << r.err;
    EXPECT_NE(r.err.find("is --model"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("refusing to overwrite an input"), std::string::npos) << r.err;
    EXPECT_EQ(read_file(model), before) << flag;
  }
  // The same file under another name (a hard link) is the same file.
  const std::string alias = temp_path("mlp_alias.h5");
  fs::remove(alias);
  fs::create_hard_link(rec, alias);
  CliResult r = run_cli(run_mlp(model, rec, "--report " + alias));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("is --recording"), std::string::npos) << r.err;
  fs::remove(alias);
}

TEST(OutputPaths, TwoOutputsOnOneFileAreRefused) {
  const std::string model = copy_of("mlp", ".model.h5"), rec = copy_of("mlp", ".recording.h5");
  const std::string out = temp_path("both.out");
  fs::remove(out);
  CliResult r = run_cli(run_mlp(model, rec, "--report " + out + " --dump " + out));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("--dump and --report are the same file"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
}

TEST(OutputPaths, AMissingOrUnwritableDirectoryIsFoundBeforeAnyWork) {
  const std::string model = data_file("mlp.model.h5"), rec = data_file("mlp.recording.h5");
  CliResult r = run_cli(run_mlp(model, rec, "--report /nonexistent-dir/r.json"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("the directory /nonexistent-dir does not exist"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");   // nothing ran
  r = run_cli(run_mlp(model, rec, "--junit " + ::testing::TempDir()));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("is a directory"), std::string::npos) << r.err;
  // diff and merge check theirs too.
  r = run_cli("diff " + model + " " + rec + " --report " + model);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("refusing to overwrite an input"), std::string::npos) << r.err;
}

}  // namespace
