// CPU-only build (-DDIVSCOPE_CUDA=OFF): the device query says why there is no device.
#include "kernels/kernels.h"

namespace divscope {

DeviceInfo query_device() {
  DeviceInfo info;
  info.available = false;
  info.reason = "divscope was built without CUDA (-DDIVSCOPE_CUDA=OFF)";
  return info;
}

}  // namespace divscope
