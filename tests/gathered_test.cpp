// runtime/transport/gathered.hpp: every rank's allgather payload is a JSON object read as
// hostile input; what is not one, or lacks a field of the expected type, is an error that
// names the rank and the exchange, never an exception out of the reader or a crash.
#include <gtest/gtest.h>

#include "runtime/transport/gathered.hpp"

namespace baton {
namespace {

result<std::vector<std::string>> hosts_of(const std::vector<std::string>& payloads) {
  std::vector<std::string> hosts;
  auto ok = read_payloads(payloads, "host names",
                          [&](int32_t, const nlohmann::json& j) -> result<void> {
                            hosts.push_back(j.at("host").get<std::string>());
                            return {};
                          });
  if (!ok) {
    return ok.err();
  }
  return hosts;
}

TEST(gathered, well_formed_payloads_are_read_in_rank_order) {
  auto h = hosts_of({to_payload({{"host", "a"}}), to_payload({{"host", "b"}})});
  ASSERT_TRUE(h.ok()) << h.err().message;
  EXPECT_EQ(*h, (std::vector<std::string>{"a", "b"}));
}

TEST(gathered, a_malformed_payload_is_an_error_naming_its_rank) {
  const std::string good = to_payload({{"host", "a"}});
  const struct {
    std::string payload, want;
  } cases[] = {
      {"host a", "host names: rank 1 sent a malformed payload (" },
      {"", "host names: rank 1 sent a malformed payload ("},
      {"[1, 2]", "host names: rank 1 sent a malformed payload (not a JSON object)"},
      {"{}", "host names: rank 1 sent a malformed payload ("},
      {"{\"host\": 7}", "host names: rank 1 sent a malformed payload ("},
      {"{\"host\": \"b\"", "host names: rank 1 sent a malformed payload ("},
  };
  for (const auto& c : cases) {
    auto h = hosts_of({good, c.payload, good});
    ASSERT_FALSE(h.ok()) << c.payload;
    EXPECT_EQ(h.err().message.rfind(c.want, 0), 0u) << c.payload << ": " << h.err().message;
  }
}

TEST(gathered, the_readers_own_error_stops_the_reading) {
  int seen = 0;
  auto ok = read_payloads({"{}", "{\"error\": \"no GPU\"}", "{}"}, "--nccl",
                          [&](int32_t r, const nlohmann::json& j) -> result<void> {
                            ++seen;
                            if (j.contains("error")) {
                              return make_error("rank %d: %s", r,
                                                j.at("error").get<std::string>().c_str());
                            }
                            return {};
                          });
  ASSERT_FALSE(ok.ok());
  EXPECT_EQ(ok.err().message, "rank 1: no GPU");
  EXPECT_EQ(seen, 2);
}

TEST(gathered, invalid_utf8_is_replaced_not_thrown) {
  const std::string p = to_payload({{"error", std::string("bad \xff byte")}});
  EXPECT_NE(p.find("bad "), std::string::npos);
  auto ok = read_payloads({p}, "x", [](int32_t, const nlohmann::json&) -> result<void> {
    return {};
  });
  EXPECT_TRUE(ok.ok());
}

}  // namespace
}  // namespace baton
