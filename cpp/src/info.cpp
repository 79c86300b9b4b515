// Build information (the CUDA parts come from CMake definitions; see CMakeLists.txt).
#include "s6kit/info.h"

namespace s6kit {

bool cuda_compiled() {
#ifdef S6KIT_WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::string cuda_archs() {
#ifdef S6KIT_WITH_CUDA
  return S6KIT_CUDA_ARCHS;
#else
  return "";
#endif
}

std::string cuda_runtime_version() {
#ifdef S6KIT_WITH_CUDA
  return S6KIT_CUDA_VERSION;
#else
  return "";
#endif
}

}  // namespace s6kit
