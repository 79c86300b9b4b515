// The CPU scan for any processor (compiled with the compiler's default instruction set).
#define S6KIT_ISA generic
#include "scan_cpu_impl.h"
