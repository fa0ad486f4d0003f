// The device check of query_device() (host/backends/device_support.h, docs/cuda.md), on the CPU:
// which image the driver would load for each compute capability, and the one line that refuses
// a device this build cannot run.
#include <gtest/gtest.h>

#include "backends/device_support.h"

namespace divscope {
namespace {

const char* kRelease = "75-real 80-real 86-real 89-real 90-real 100-real 120-real 120-virtual";

TEST(DeviceSupport, ParsesCMakeArchitectureLists) {
  const CudaArchList l = parse_cuda_archs("75-real;90;120-virtual, 90a-real");
  ASSERT_FALSE(l.unknown);
  ASSERT_EQ(l.archs.size(), 4u);
  EXPECT_EQ(l.archs[0].arch, 75);
  EXPECT_TRUE(l.archs[0].sass);
  EXPECT_FALSE(l.archs[0].ptx);
  EXPECT_TRUE(l.archs[1].sass && l.archs[1].ptx);   // "90": SASS and PTX
  EXPECT_EQ(l.archs[2].arch, 120);
  EXPECT_TRUE(!l.archs[2].sass && l.archs[2].ptx);
  EXPECT_EQ(l.archs[3].suffix, 'a');
  EXPECT_TRUE(parse_cuda_archs("native").unknown);
  EXPECT_TRUE(parse_cuda_archs("all-major").unknown);
  EXPECT_TRUE(parse_cuda_archs("").unknown);
  EXPECT_EQ(describe_cuda_archs(kRelease),
            "sm_75 sm_80 sm_86 sm_89 sm_90 sm_100 sm_120 + PTX compute_120");
  EXPECT_EQ(describe_cuda_archs("90"), "sm_90 + PTX compute_90");
}

// Every device generation in use, against the release list: which SASS runs, or the PTX.
TEST(DeviceSupport, ReleaseListRunsEveryGenerationInUse) {
  const CudaArchList l = parse_cuda_archs(kRelease);
  struct Case { int cc, arch; bool jit; } cases[] = {
      {75, 75, false},    // T4, RTX 20
      {80, 80, false},    // A100
      {86, 86, false},    // A10, RTX 30
      {87, 86, false},    // Jetson Orin: sm_86 SASS (same major, lower minor)
      {89, 89, false},    // L4, L40S, RTX 40
      {90, 90, false},    // H100, H200
      {100, 100, false},  // B200
      {103, 100, false},  // B300: sm_100 SASS
      {120, 120, false},  // RTX 50, RTX PRO 6000 Blackwell
      {121, 120, false},  // DGX Spark: sm_120 SASS
      {130, 120, true},   // a future GPU: the compute_120 PTX, JIT-compiled
  };
  for (const Case& c : cases) {
    const CudaImage im = cuda_image_for(c.cc, l);
    EXPECT_TRUE(im.found) << c.cc;
    EXPECT_EQ(im.arch, c.arch) << c.cc;
    EXPECT_EQ(im.jit, c.jit) << c.cc;
    EXPECT_TRUE(device_support("GPU", c.cc / 10, c.cc % 10, kRelease).supported) << c.cc;
  }
  // Thor (11.0): no SASS of major 11, and PTX 12.0 cannot run on 11.0.
  EXPECT_FALSE(cuda_image_for(110, l).found);
}

TEST(DeviceSupport, RefusesOldDevicesWithOneLine) {
  const DeviceSupport s = device_support("Tesla V100-SXM2-16GB", 7, 0, kRelease);
  EXPECT_FALSE(s.supported);
  EXPECT_EQ(s.reason,
            "GPU 'Tesla V100-SXM2-16GB' (compute capability 7.0) is not supported: divscope needs "
            "compute capability 7.5 or newer (CUDA 13 has no Maxwell, Pascal or Volta code); this "
            "build has sm_75 sm_80 sm_86 sm_89 sm_90 sm_100 sm_120 + PTX compute_120");
  EXPECT_EQ(s.reason.find('\n'), std::string::npos);
  EXPECT_FALSE(device_support("Tesla P100", 6, 0, "native").supported);   // even when unknown
}

TEST(DeviceSupport, RefusesADeviceTheBuildHasNoCodeFor) {
  // A development build for the H100 only, on an A100 and on a T4.
  const DeviceSupport a100 = device_support("NVIDIA A100-SXM4-40GB", 8, 0, "90");
  EXPECT_FALSE(a100.supported);
  EXPECT_EQ(a100.reason,
            "GPU 'NVIDIA A100-SXM4-40GB' (compute capability 8.0) has no code in this build "
            "(sm_90 + PTX compute_90): rebuild with 80-real added to -DDIVSCOPE_CUDA_ARCHS "
            "(docs/cuda.md)");
  EXPECT_FALSE(device_support("Tesla T4", 7, 5, "90-real").supported);
  EXPECT_TRUE(device_support("NVIDIA H200", 9, 0, "90").supported);
  // SASS only, newer device of the same major: sm_80 code runs on 8.6; no PTX, no 9.0.
  EXPECT_TRUE(device_support("NVIDIA A10", 8, 6, "80-real").supported);
  EXPECT_FALSE(device_support("NVIDIA H100", 9, 0, "80-real").supported);
  // PTX runs on every later device.
  EXPECT_TRUE(device_support("NVIDIA H100", 9, 0, "80-virtual").image.jit);
  // Architecture-specific code (90a) only on that exact architecture, even as PTX.
  EXPECT_FALSE(device_support("NVIDIA B200", 10, 0, "90a").supported);
  EXPECT_TRUE(device_support("NVIDIA H100", 9, 0, "90a-real").supported);
  // Family code (100f): SASS within the major.
  EXPECT_TRUE(device_support("NVIDIA B300", 10, 3, "100f-real").supported);
  EXPECT_FALSE(device_support("NVIDIA RTX 5090", 12, 0, "100f").supported);
}

TEST(DeviceSupport, UnknownListsAreLeftToTheRunTimeProbe) {
  const DeviceSupport s = device_support("NVIDIA H100", 9, 0, "native");
  EXPECT_TRUE(s.supported);
  EXPECT_FALSE(s.image.found);
}

}  // namespace
}  // namespace divscope
