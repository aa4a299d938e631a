// sampler_options.h: the image sampler's command-line options, shared by generate, edit and eval.
#pragma once
#include "options.h"
#include "vargpt/generate.h"

// --size, --cfg, --tau, --top-p, --top-k into `image`, range-checked. Defined in apps/cmd_generate.cpp.
void parse_sampler_options(const ::vargpt::Options& o, vt::vargpt::ImageOptions& image);
