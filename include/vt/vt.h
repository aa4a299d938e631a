// vt.h: the whole tensor library in one include.
#pragma once
#include "vt/autograd.h"
#include "vt/backend.h"
#include "vt/ops.h"
#include "vt/random.h"
#include "vt/tensor.h"
