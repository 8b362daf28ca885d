// runtime/system/device.hpp: the one parser of device names, and the local device query
// agreeing with it.
#include <gtest/gtest.h>

#include "runtime/system/device.hpp"

namespace baton {
namespace {

TEST(device, names_parse_into_a_kind_and_an_index) {
  const auto cpu = parse_device("cpu");
  ASSERT_TRUE(cpu);
  EXPECT_EQ(cpu->kind, device_kind::cpu);
  const auto gpu = parse_device("cuda:12");
  ASSERT_TRUE(gpu);
  EXPECT_EQ(gpu->kind, device_kind::cuda);
  EXPECT_EQ(gpu->index, 12);
  for (const char* bad : {"", "gpu", "cuda", "cuda:", "cuda:-1", "cuda:1x", "cuda:x", "CPU",
                          "cuda: 1", "cuda:99999999999"}) {
    EXPECT_FALSE(parse_device(bad)) << bad;
  }
  EXPECT_EQ(cuda_device_index("cuda:3"), 3);
  EXPECT_FALSE(cuda_device_index("cpu"));
}

TEST(device, the_local_query_names_what_it_cannot_describe) {
  const device_info cpu = query_local_device("cpu");
  EXPECT_TRUE(cpu.exists);
  EXPECT_GT(cpu.memory_bytes, 0u);
  const device_info bad = query_local_device("gpu0");
  EXPECT_FALSE(bad.exists);
  EXPECT_NE(bad.source.find("'gpu0' is not a device"), std::string::npos) << bad.source;
  std::string why;
  const bool here = cuda_device_available(&why);
  EXPECT_EQ(query_local_device("cuda:0").exists, here) << why;
  if (!here) {
    EXPECT_FALSE(why.empty());
  }
}

}  // namespace
}  // namespace baton
