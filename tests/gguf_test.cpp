// runtime/model/gguf: what the writer writes the reader reads back, for every value type,
// both versions, any alignment; tensors are views into the mapping, never copies.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <unistd.h>
#include <sys/stat.h>

#include "runtime/model/gguf.hpp"
#include "tests/test_util.hpp"

namespace baton {
namespace {

gguf_array array_of(gguf_type t, std::vector<gguf_value> items) {
  gguf_array a;
  a.type = t;
  a.items = std::move(items);
  return a;
}

gguf_writer every_type_writer(uint32_t version) {
  gguf_writer w(version);
  w.set("u8", uint8_t{200});
  w.set("i8", int8_t{-100});
  w.set("u16", uint16_t{60000});
  w.set("i16", int16_t{-30000});
  w.set("u32", uint32_t{4000000000u});
  w.set("i32", int32_t{-2000000000});
  w.set("f32", 1.5f);
  w.set("bool", true);
  w.set("str", std::string("héllo\0world", 12));
  w.set("u64", uint64_t{1} << 60);
  w.set("i64", int64_t{-(int64_t{1} << 60)});
  w.set("f64", 2.25);
  w.set("strings", array_of(gguf_type::string, {"a", "", "<|eot_id|>"}));
  w.set("ints", array_of(gguf_type::int32, {int32_t{1}, int32_t{-2}, int32_t{3}}));
  w.set("nested", array_of(gguf_type::array, {array_of(gguf_type::uint8, {uint8_t{1}}),
                                              array_of(gguf_type::uint8, {})}));
  return w;
}

TEST(gguf, every_value_type_round_trips_in_v2_and_v3) {
  for (uint32_t version : {2u, 3u}) {
    const auto bytes = every_type_writer(version).to_bytes();
    auto f = gguf_file::parse(bytes.data(), bytes.size(), "mem");
    ASSERT_TRUE(f) << f.err().message;
    EXPECT_EQ(f->version(), version);
    ASSERT_EQ(f->metadata().size(), 15u);
    EXPECT_EQ(std::get<uint8_t>(f->find("u8")->v), 200);
    EXPECT_EQ(std::get<int8_t>(f->find("i8")->v), -100);
    EXPECT_EQ(std::get<uint16_t>(f->find("u16")->v), 60000);
    EXPECT_EQ(std::get<int16_t>(f->find("i16")->v), -30000);
    EXPECT_EQ(std::get<uint32_t>(f->find("u32")->v), 4000000000u);
    EXPECT_EQ(std::get<int32_t>(f->find("i32")->v), -2000000000);
    EXPECT_EQ(std::get<float>(f->find("f32")->v), 1.5f);
    EXPECT_EQ(std::get<bool>(f->find("bool")->v), true);
    EXPECT_EQ(*f->find("str")->as_string(), std::string("héllo\0world", 12));
    EXPECT_EQ(std::get<uint64_t>(f->find("u64")->v), uint64_t{1} << 60);
    EXPECT_EQ(std::get<int64_t>(f->find("i64")->v), -(int64_t{1} << 60));
    EXPECT_EQ(std::get<double>(f->find("f64")->v), 2.25);
    const auto* s = f->find("strings")->as_array();
    ASSERT_TRUE(s);
    EXPECT_EQ(s->type, gguf_type::string);
    ASSERT_EQ(s->items.size(), 3u);
    EXPECT_EQ(*s->items[2].as_string(), "<|eot_id|>");
    const auto* n = f->find("nested")->as_array();
    ASSERT_TRUE(n);
    ASSERT_EQ(n->items.size(), 2u);
    EXPECT_EQ(n->items[0].as_array()->items.size(), 1u);
    EXPECT_EQ(n->items[1].as_array()->items.size(), 0u);
    // typed lookups
    EXPECT_EQ(**f->get_int("u32"), 4000000000);
    EXPECT_EQ(**f->get_float("f64"), 2.25);
    EXPECT_FALSE(f->get_int("missing")->has_value());
    auto wrong = f->get_string("u8");
    ASSERT_FALSE(wrong);
    EXPECT_NE(wrong.err().message.find("'u8' is uint8, expected string"), std::string::npos);
  }
}

TEST(gguf, tensors_are_views_into_the_mapping) {
  const auto dir = test::temp_dir("gguf-views");
  const auto path = (dir / "t.gguf").string();
  gguf_writer w;
  w.set("general.architecture", "test");
  std::vector<float> a(64);
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<float>(i) * 0.5f;
  }
  w.add_tensor_bytes("a", ggml_type::f32, {16, 4},
                     std::as_bytes(std::span<const float>(a.data(), a.size())));
  w.add_tensor("b", ggml_type::q8_0, {64, 3}, [](std::span<std::byte> out) {
    for (size_t i = 0; i < out.size(); ++i) {
      out[i] = static_cast<std::byte>(i & 0x7f);
    }
  });
  w.add_tensor("hole", ggml_type::q4_k, {256, 2});  // no data: zeros
  ASSERT_TRUE(w.write(path));

  auto f = gguf_file::open(path);
  ASSERT_TRUE(f) << f.err().message;
  ASSERT_EQ(f->tensors().size(), 3u);
  EXPECT_EQ(f->data_offset() % 32, 0u);
  const auto* ta = f->find_tensor("a");
  ASSERT_TRUE(ta);
  EXPECT_EQ(ta->n_dims, 2u);
  EXPECT_EQ(ta->ne[0], 16);
  EXPECT_EQ(ta->ne[1], 4);
  EXPECT_EQ(ta->n_bytes, 256u);
  EXPECT_EQ(std::memcmp(ta->data, a.data(), 256), 0);
  const auto* tb = f->find_tensor("b");
  EXPECT_EQ(tb->n_bytes, 3u * 2u * 34u);
  EXPECT_EQ(tb->offset % 32, 0u);
  EXPECT_EQ(static_cast<int>(tb->data[5]), 5);
  const auto* th = f->find_tensor("hole");
  EXPECT_EQ(th->n_bytes, 2u * 144u);
  EXPECT_EQ(static_cast<int>(th->data[100]), 0);
  // the data pointers lie inside the file's mapping: views, not copies
  const auto* base = ta->data - f->data_offset() - ta->offset;
  EXPECT_EQ(tb->data, base + f->data_offset() + tb->offset);
  EXPECT_EQ(f->file_size(), std::filesystem::file_size(path));
  std::filesystem::remove_all(dir);
}

/// Resident pages of this process (statm's second field).
long resident_pages() {
  std::ifstream in("/proc/self/statm");
  long size = 0, resident = 0;
  in >> size >> resident;
  return resident;
}

TEST(gguf, released_pages_leave_the_process_and_read_back_the_same) {
  // what a GPU stage does after uploading a tensor: the file's pages stop counting
  // against this process, and a later reader (a CPU stage) still sees the data
  const auto dir = test::temp_dir("gguf-release");
  const auto path = (dir / "big.gguf").string();
  constexpr int64_t n = 8 << 20;  // 32 MiB of f32
  gguf_writer w;
  w.set("general.architecture", "test");
  w.add_tensor("t", ggml_type::f32, {n}, [](std::span<std::byte> out) {
    for (size_t i = 0; i < out.size(); ++i) {
      out[i] = static_cast<std::byte>((i * 7) & 0xff);
    }
  });
  ASSERT_TRUE(w.write(path));
  auto f = gguf_file::open(path);
  ASSERT_TRUE(f) << f.err().message;
  const tensor_info* t = f->find_tensor("t");
  ASSERT_TRUE(t);
  auto sum = [&] {
    uint64_t s = 0;
    for (uint64_t i = 0; i < t->n_bytes; i += 512) {
      s += static_cast<uint64_t>(t->data[i]);
    }
    return s;
  };
  const long before = resident_pages();
  const uint64_t first = sum();
  const long touched = resident_pages();
  const long page_kib = sysconf(_SC_PAGESIZE) / 1024;
  EXPECT_GT((touched - before) * page_kib, 24 * 1024) << "reading 32 MiB made them resident";
  f->release_pages(t->data, t->n_bytes);
  const long released = resident_pages();
  EXPECT_LT((released - before) * page_kib, 4 * 1024) << "released pages still count";
  EXPECT_EQ(sum(), first);  // re-read from the file on demand
  // a caller's buffer is never released (it may be the only copy)
  const std::string bytes = test::slurp(path);
  std::vector<std::byte> copy(bytes.size());
  std::memcpy(copy.data(), bytes.data(), bytes.size());
  auto g = gguf_file::parse(copy.data(), copy.size(), "buffer");
  ASSERT_TRUE(g) << g.err().message;
  const tensor_info* gt = g->find_tensor("t");
  g->release_pages(gt->data, gt->n_bytes);  // anonymous memory: DONTNEED would zero it
  EXPECT_EQ(std::memcmp(gt->data, t->data, t->n_bytes), 0);
  std::filesystem::remove_all(dir);
}

TEST(gguf, custom_alignment) {
  gguf_writer w;
  w.set_alignment(64);
  w.add_tensor("x", ggml_type::f32, {3});
  w.add_tensor("y", ggml_type::f32, {5});
  const auto bytes = w.to_bytes();
  auto f = gguf_file::parse(bytes.data(), bytes.size(), "mem");
  ASSERT_TRUE(f) << f.err().message;
  EXPECT_EQ(f->alignment(), 64u);
  EXPECT_EQ(f->data_offset() % 64, 0u);
  EXPECT_EQ(f->find_tensor("y")->offset, 64u);
}

TEST(gguf, sparse_tensors_cost_no_disk) {
  const auto dir = test::temp_dir("gguf-sparse");
  const auto path = (dir / "big.gguf").string();
  gguf_writer w;
  w.add_tensor("big", ggml_type::f16, {4096, 65536});  // 512 MiB of zeros
  ASSERT_TRUE(w.write(path));
  auto f = gguf_file::open(path);
  ASSERT_TRUE(f) << f.err().message;
  EXPECT_EQ(f->find_tensor("big")->n_bytes, 512ull << 20);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, 16ull << 20);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace baton
