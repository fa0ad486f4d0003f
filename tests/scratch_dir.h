// A directory of this test process under gtest's TempDir, removed at exit (a static of the
// test file that uses it).
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>

struct ScratchDir {
  std::string path;
  explicit ScratchDir(const std::string& prefix)
      : path(::testing::TempDir() + prefix + std::to_string(getpid())) {
    std::filesystem::create_directories(path);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};
