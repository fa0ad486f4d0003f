// Environment capture (README, Building): what machine, compiler and CUDA setup produced a result.
#pragma once
#include <nlohmann/json.hpp>

namespace divscope {

// Host, compiler, divscope version, CUDA runtime/driver and device 0 — or why there is none.
nlohmann::json environment_json();

}  // namespace divscope
