// random.h: the Generator (seed + call offset) behind vt's random tensors; see philox.h for the
// stream convention shared by the CPU and CUDA backends.
#pragma once
#include "vt/philox.h"
