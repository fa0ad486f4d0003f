// Plain C++ API of the CUDA kernels (DESIGN §2): no CUDA types in this header.
#pragma once
#include <string>

namespace divscope {

struct DeviceInfo {
  bool available = false;
  std::string reason;          // why no device, when !available
  int runtime_version = 0;     // e.g. 13000
  int driver_version = 0;
  int device_count = 0;
  std::string name;            // device 0
  int cc_major = 0, cc_minor = 0;
  size_t total_memory = 0;     // bytes
  int multiprocessors = 0;
};

// Never throws: a machine without a driver or device is reported in `reason`.
DeviceInfo query_device();

}  // namespace divscope
