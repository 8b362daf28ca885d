// topology/layer_range: parsing what topology files write, and even splits.
#include <gtest/gtest.h>

#include "topology/layer_range.hpp"

namespace baton {
namespace {

TEST(layer_range, parses_inclusive_ranges) {
  auto r = parse_layer_range("0-15");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->first, 0);
  EXPECT_EQ(r->last, 16);
  EXPECT_EQ(r->to_string(), "0-15");
  auto one = parse_layer_range("7");
  ASSERT_TRUE(one);
  EXPECT_EQ(one->size(), 1);
  auto a = parse_layer_range("auto");
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->automatic);
}

TEST(layer_range, rejects_with_the_text) {
  for (const char* bad : {"", "-", "a-b", "3-", "-3", "1-2-3", "5-2", "1.5"}) {
    auto r = parse_layer_range(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.err().message.find(std::string("'") + bad + "'"), std::string::npos)
        << r.err().message;
  }
  EXPECT_NE(parse_layer_range("5-2").err().message.find("first layer 5 is after last layer 2"),
            std::string::npos);
}

TEST(layer_range, split_covers_every_layer_once) {
  auto s = split_layers(10, 3);
  ASSERT_TRUE(s);
  ASSERT_EQ(s->size(), 3u);
  EXPECT_EQ((*s)[0].to_string(), "0-3");
  EXPECT_EQ((*s)[1].to_string(), "4-6");
  EXPECT_EQ((*s)[2].to_string(), "7-9");
  EXPECT_FALSE(split_layers(4, 5));
  EXPECT_FALSE(split_layers(4, 0));
}

}  // namespace
}  // namespace baton
