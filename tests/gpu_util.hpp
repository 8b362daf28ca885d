// BATON_REQUIRE_GPU(): skips a test, with the reason, unless a CUDA device can be used
// (always, in a build without CUDA). Needs only kernels/ and GoogleTest.
#pragma once

#include <gtest/gtest.h>

#include <string>

#if defined(BATON_HAVE_CUDA)
#include "kernels/cuda/dequantize.cuh"

#define BATON_REQUIRE_GPU()                          \
  do {                                               \
    std::string why_;                                \
    if (!::baton::cuda::device_available(&why_)) {   \
      GTEST_SKIP() << why_;                          \
    }                                                \
  } while (0)
#else
#define BATON_REQUIRE_GPU() GTEST_SKIP() << "this build has no CUDA (nvcc was not found)"
#endif
