// Device support decision (device_support.h, docs/cuda.md).
#include "backends/device_support.h"

#include <cctype>

namespace divscope {
namespace {

std::vector<std::string> tokens(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : text) {
    if (c == ';' || c == ',' || std::isspace(static_cast<unsigned char>(c))) {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

// "86", "90a-real", "120-virtual"; false for anything else.
bool parse_one(const std::string& tok, CudaArch* a) {
  size_t i = 0;
  while (i < tok.size() && std::isdigit(static_cast<unsigned char>(tok[i]))) ++i;
  if (i == 0 || i > 4) return false;
  a->arch = std::stoi(tok.substr(0, i));
  a->suffix = 0;
  if (i < tok.size() && (tok[i] == 'a' || tok[i] == 'f')) a->suffix = tok[i++];
  const std::string kind = tok.substr(i);
  a->sass = kind.empty() || kind == "-real";
  a->ptx = kind.empty() || kind == "-virtual";
  return kind.empty() || kind == "-real" || kind == "-virtual";
}

std::string cc_text(int cc) { return std::to_string(cc / 10) + "." + std::to_string(cc % 10); }

std::string arch_name(const CudaArch& a) {
  return std::to_string(a.arch) + (a.suffix ? std::string(1, a.suffix) : std::string());
}

}  // namespace

CudaArchList parse_cuda_archs(const std::string& text) {
  CudaArchList list;
  for (const std::string& tok : tokens(text)) {
    CudaArch a;
    if (parse_one(tok, &a)) list.archs.push_back(a);
    else list.unknown = true;   // native, all, all-major, OFF: what they expand to is not known here
  }
  if (list.archs.empty()) list.unknown = true;
  return list;
}

CudaImage cuda_image_for(int cc, const CudaArchList& built) {
  CudaImage best;
  for (const CudaArch& a : built.archs) {   // SASS: same major, minor at most the device's
    if (!a.sass || a.arch / 10 != cc / 10 || a.arch > cc || (a.suffix == 'a' && a.arch != cc)) continue;
    if (!best.found || a.arch > best.arch) best = CudaImage{true, a.arch, false};
  }
  if (best.found) return best;
  for (const CudaArch& a : built.archs) {   // PTX: any older virtual architecture, JIT-compiled
    if (!a.ptx || a.arch > cc || (a.suffix == 'a' && a.arch != cc) ||
        (a.suffix == 'f' && a.arch / 10 != cc / 10))
      continue;
    if (!best.found || a.arch > best.arch) best = CudaImage{true, a.arch, true};
  }
  return best;
}

std::string describe_cuda_archs(const std::string& built) {
  const CudaArchList list = parse_cuda_archs(built);
  if (list.unknown) return "'" + built + "'";
  std::string sass, ptx;
  for (const CudaArch& a : list.archs) {
    if (a.sass) sass += (sass.empty() ? "sm_" : " sm_") + arch_name(a);
    if (a.ptx) ptx += (ptx.empty() ? "compute_" : " compute_") + arch_name(a);
  }
  if (ptx.empty()) return sass;
  return sass.empty() ? "PTX " + ptx : sass + " + PTX " + ptx;
}

DeviceSupport device_support(const std::string& device_name, int cc_major, int cc_minor,
                             const std::string& built) {
  DeviceSupport s;
  const int cc = cc_major * 10 + cc_minor;
  const std::string who = "GPU '" + device_name + "' (compute capability " + cc_text(cc) + ")";
  if (cc < kMinComputeCapability) {
    s.reason = who + " is not supported: divscope needs compute capability " +
               cc_text(kMinComputeCapability) +
               " or newer (CUDA 13 has no Maxwell, Pascal or Volta code); this build has " +
               describe_cuda_archs(built);
    return s;
  }
  const CudaArchList list = parse_cuda_archs(built);
  if (list.unknown) {   // decided by the run-time probe alone (query_device)
    s.supported = true;
    return s;
  }
  s.image = cuda_image_for(cc, list);
  if (!s.image.found) {
    s.reason = who + " has no code in this build (" + describe_cuda_archs(built) +
               "): rebuild with " + std::to_string(cc) +
               "-real added to -DDIVSCOPE_CUDA_ARCHS (docs/cuda.md)";
    return s;
  }
  s.supported = true;
  return s;
}

}  // namespace divscope
