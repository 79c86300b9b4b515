// Emulation stand-in for <cuda_runtime.h>.
#pragma once
#include "cuda_emu.h"
