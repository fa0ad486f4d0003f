#include "env.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <thread>

#include "kernels/kernels.h"

namespace divscope {
namespace {

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      auto pos = line.find(':');
      if (pos != std::string::npos) return line.substr(line.find_first_not_of(" \t", pos + 1));
    }
  return "unknown";
}

std::string version_str(int v) {
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

}  // namespace

nlohmann::json environment_json() {
  nlohmann::json host;
  char name[256] = {0};
  gethostname(name, sizeof(name) - 1);
  struct utsname u {};
  uname(&u);
  host["hostname"] = name;
  host["os"] = std::string(u.sysname) + " " + u.release;
  host["arch"] = u.machine;
  host["cpu"] = cpu_model();
  host["cores"] = std::thread::hardware_concurrency();

  nlohmann::json j;
  j["divscope_version"] = DIVSCOPE_VERSION;
  j["host"] = host;
  j["compiler"] = DIVSCOPE_COMPILER;

  DeviceInfo d = query_device();
  nlohmann::json cuda;
  cuda["available"] = d.available;
  if (d.runtime_version) cuda["runtime"] = version_str(d.runtime_version);
  if (d.driver_version) cuda["driver"] = version_str(d.driver_version);
  if (d.available) {
    cuda["device_count"] = d.device_count;
    cuda["gpu"] = d.name;
    cuda["compute_capability"] = std::to_string(d.cc_major) + "." + std::to_string(d.cc_minor);
    cuda["memory_bytes"] = d.total_memory;
    cuda["multiprocessors"] = d.multiprocessors;
  } else {
    cuda["reason"] = d.reason;
  }
  j["cuda"] = cuda;
  return j;
}

}  // namespace divscope
