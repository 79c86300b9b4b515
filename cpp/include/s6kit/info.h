// What this build of s6kit contains.
#pragma once

#include <string>

namespace s6kit {

const char* cpu_isa();            // CPU scan variant chosen for this processor
bool cuda_compiled();             // the CUDA backend is built in
std::string cuda_archs();         // e.g. "sm_90 (+PTX compute_90)", empty without CUDA
std::string cuda_runtime_version();  // e.g. "13.0", empty without CUDA

}  // namespace s6kit
