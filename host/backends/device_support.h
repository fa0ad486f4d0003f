// Can this build's kernels run on a device? (docs/cuda.md) A pure function of the device's
// compute capability and the architecture list the build was compiled for, so that the decision
// query_device() makes on a GPU machine is unit-tested on the CPU.
#pragma once
#include <string>
#include <vector>

namespace divscope {

// The oldest compute capability CUDA 13 compiles for (Turing): Maxwell, Pascal and Volta were
// dropped from the toolkit, so no build of divscope can hold code for them.
constexpr int kMinComputeCapability = 75;

// One entry of a CMAKE_CUDA_ARCHITECTURES list: "86" (SASS + PTX), "86-real" (SASS only),
// "120-virtual" (PTX only), with an optional "a" (this exact architecture only) or "f" (its
// family, the same major) suffix on the number.
struct CudaArch {
  int arch = 0;            // 86 for sm_86
  bool sass = false, ptx = false;
  char suffix = 0;         // 0, 'a' or 'f'
};

struct CudaArchList {
  std::vector<CudaArch> archs;
  bool unknown = false;    // "native", "all", "all-major" or unparsable: decided at run time only
};
CudaArchList parse_cuda_archs(const std::string& text);   // separators: ';', ',' or spaces

// The image the CUDA driver would load for a device of compute capability cc (e.g. 87), or
// none: SASS built for sm_XY runs on X.z for z >= Y (the highest such Y is taken); otherwise the
// highest PTX at or below cc is JIT-compiled. "a" images need cc exactly; "f" PTX the same major.
struct CudaImage {
  bool found = false;
  int arch = 0;            // the __CUDA_ARCH__/10 the image was compiled for (PTX: cc itself runs it)
  bool jit = false;        // PTX, compiled by the driver at first use
};
CudaImage cuda_image_for(int cc, const CudaArchList& built);

struct DeviceSupport {
  bool supported = false;
  std::string reason;      // one line naming the device, its compute capability and the build, when not
  CudaImage image;
};
// `built` is the build's list as CMake wrote it (DIVSCOPE_CUDA_ARCHS, space-separated).
DeviceSupport device_support(const std::string& device_name, int cc_major, int cc_minor,
                             const std::string& built);

// "sm_75 sm_80 ... + PTX compute_120": a list as a reader of an error message wants it.
std::string describe_cuda_archs(const std::string& built);

}  // namespace divscope
