// The CPU SoftSort for any processor (compiled with the compiler's default instruction set).
#define S6KIT_ISA generic
#include "softsort_cpu_impl.h"
