// The CPU SoftSort for x86-64 processors with AVX2 and FMA (compiled with -mavx2 -mfma).
#define S6KIT_ISA avx2
#include "softsort_cpu_impl.h"
