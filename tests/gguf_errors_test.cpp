// Bad GGUF input, table-driven: each case makes a broken file (with the writer, by
// hand-assembled bytes, or by cutting and corrupting a good one) and names the part of
// the error message that must say what and where. None may crash (ASan/fuzz cover more).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>

#include "runtime/model/gguf.hpp"
#include "runtime/model/model_builder.hpp"
#include "runtime/model/model_config.hpp"
#include "tests/test_util.hpp"

namespace baton {
namespace {

/// Hand-assembled GGUF bytes, for fields the writer never gets wrong.
struct raw {
  std::vector<std::byte> b;
  template <class T>
  raw& put(T v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    b.insert(b.end(), p, p + sizeof v);
    return *this;
  }
  raw& str(const std::string& s) {
    put<uint64_t>(s.size());
    for (char c : s) {
      b.push_back(static_cast<std::byte>(c));
    }
    return *this;
  }
  raw& header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    b.insert(b.end(), {std::byte{'G'}, std::byte{'G'}, std::byte{'U'}, std::byte{'F'}});
    return put(version).put(n_tensors).put(n_kv);
  }
  raw& tensor(const std::string& name, std::vector<int64_t> ne, uint32_t type, uint64_t off) {
    str(name).put<uint32_t>(static_cast<uint32_t>(ne.size()));
    for (auto d : ne) {
      put<int64_t>(d);
    }
    return put(type).put(off);
  }
  raw& pad(size_t n) {
    b.resize(b.size() + n, std::byte{0});
    return *this;
  }
  raw& align(size_t a) { return pad((a - b.size() % a) % a); }
};

/// A small valid file with two f32 tensors of 32 elements.
gguf_writer two_tensors() {
  gguf_writer w;
  w.set("general.architecture", "test");
  w.add_tensor("a", ggml_type::f32, {32});
  w.add_tensor("b", ggml_type::f32, {32});
  return w;
}

size_t find_bytes(const std::vector<std::byte>& hay, const std::string& needle) {
  for (size_t i = 0; i + needle.size() <= hay.size(); ++i) {
    if (std::memcmp(hay.data() + i, needle.data(), needle.size()) == 0) {
      return i;
    }
  }
  ADD_FAILURE() << "'" << needle << "' not in the file";
  return 0;
}

template <class T>
void poke(std::vector<std::byte>& b, size_t at, T v) {
  std::memcpy(b.data() + at, &v, sizeof v);
}

struct file_case {
  const char* name;
  std::function<std::vector<std::byte>()> make;
  const char* expected;  // substring of the error message
};

const std::vector<file_case>& file_cases() {
  static const std::vector<file_case> cases = {
      {"empty file", [] { return std::vector<std::byte>{}; }, "truncated file: 0 bytes"},
      {"truncated header",
       [] {
         auto b = two_tensors().to_bytes();
         b.resize(10);
         return b;
       },
       "truncated file: tensor count at offset 8"},
      {"wrong magic",
       [] {
         auto b = two_tensors().to_bytes();
         std::memcpy(b.data(), "GGML", 4);
         return b;
       },
       "not a GGUF file: magic is 'GGML', expected 'GGUF'"},
      {"version 1", [] { return raw{}.header(1, 0, 0).b; }, "unsupported GGUF version 1"},
      {"version 4", [] { return raw{}.header(4, 0, 0).b; }, "unsupported GGUF version 4"},
      {"string length past the end",
       [] { return raw{}.header(3, 0, 1).put<uint64_t>(1000).pad(20).b; },
       "metadata key #0: string length 1000 at offset 24 runs past the end"},
      {"metadata count past the end", [] { return raw{}.header(3, 0, 1u << 30).pad(64).b; },
       "metadata count 1073741824 at offset 16 is more than the file can hold"},
      {"tensor count past the end", [] { return raw{}.header(3, 1u << 30, 0).pad(64).b; },
       "tensor count 1073741824 at offset 8 is more than the file can hold"},
      {"unknown value type",
       [] { return raw{}.header(3, 0, 1).str("k").put<uint32_t>(13).pad(8).b; },
       "metadata 'k': unknown value type 13 at offset 33"},
      {"array count past the end",
       [] {
         return raw{}.header(3, 0, 1).str("tokens").put<uint32_t>(9).put<uint32_t>(8)
             .put<uint64_t>(1000000).str("a").b;
       },
       "metadata 'tokens': array count 1000000 at offset 46 runs past the end"},
      {"unknown array element type",
       [] {
         return raw{}.header(3, 0, 1).str("k").put<uint32_t>(9).put<uint32_t>(77)
             .put<uint64_t>(0).b;
       },
       "unknown array element type 77"},
      {"string in an array past the end",
       [] {
         return raw{}.header(3, 0, 1).str("tokens").put<uint32_t>(9).put<uint32_t>(8)
             .put<uint64_t>(2).str("ok").put<uint64_t>(99).b;
       },
       "metadata 'tokens': string length 99"},
      {"bad boolean",
       [] { return raw{}.header(3, 0, 1).str("flag").put<uint32_t>(7).put<uint8_t>(7).b; },
       "metadata 'flag': boolean byte is 7, expected 0 or 1"},
      {"duplicate key",
       [] {
         return raw{}.header(3, 0, 2).str("k").put<uint32_t>(4).put<uint32_t>(1)
             .str("k").put<uint32_t>(4).put<uint32_t>(2).b;
       },
       "duplicate metadata key 'k'"},
      {"alignment not a power of two",
       [] {
         return raw{}.header(3, 0, 1).str("general.alignment").put<uint32_t>(4)
             .put<uint32_t>(48).b;
       },
       "'general.alignment' is 48, expected a power of two"},
      {"alignment of the wrong type",
       [] {
         return raw{}.header(3, 0, 1).str("general.alignment").put<uint32_t>(8).str("32").b;
       },
       "'general.alignment' is string, expected uint32"},
      {"unknown tensor type",
       [] { return raw{}.header(3, 1, 0).tensor("w", {32}, 99, 0).align(32).pad(128).b; },
       "tensor 'w': unknown tensor type id 99"},
      {"removed tensor type id",
       [] { return raw{}.header(3, 1, 0).tensor("w", {32}, 4, 0).align(32).pad(128).b; },
       "tensor 'w': unknown tensor type id 4"},
      {"too many dimensions",
       [] {
         return raw{}.header(3, 1, 0).tensor("w", {1, 1, 1, 1, 1}, 0, 0).align(32).pad(64).b;
       },
       "tensor 'w': 5 dimensions, expected 1 to 4"},
      {"zero dimension",
       [] { return raw{}.header(3, 1, 0).tensor("w", {0}, 0, 0).align(32).b; },
       "tensor 'w': dimension 0 is 0, expected > 0"},
      {"row not a multiple of the block",
       [] { return raw{}.header(3, 1, 0).tensor("w", {100}, 2, 0).align(32).pad(128).b; },
       "tensor 'w': first dimension 100 is not a multiple of the q4_0 block size 32"},
      {"misaligned offset",
       [] {
         auto b = two_tensors().to_bytes();
         // b's offset field: after name "b", n_dims, ne[0], type
         const size_t at = find_bytes(b, std::string("\x01\0\0\0\0\0\0\0b", 9)) + 9 + 4 + 8 + 4;
         poke<uint64_t>(b, at, 130);
         return b;
       },
       "tensor 'b': data offset 130 is not a multiple of the alignment 32"},
      {"duplicate tensor name",
       [] {
         auto b = two_tensors().to_bytes();
         const size_t at = find_bytes(b, std::string("\x01\0\0\0\0\0\0\0b", 9)) + 8;
         b[at] = std::byte{'a'};
         return b;
       },
       "duplicate tensor name 'a'"},
      {"tensor data past the end (cut file)",
       [] {
         auto b = two_tensors().to_bytes();
         b.resize(b.size() - 1);
         return b;
       },
       "tensor 'b' (f32 [32], 128 bytes at data offset 128) runs past the end of the file"},
      {"tensor offset past the end",
       [] {
         auto b = two_tensors().to_bytes();
         const size_t at = find_bytes(b, std::string("\x01\0\0\0\0\0\0\0b", 9)) + 9 + 4 + 8 + 4;
         poke<uint64_t>(b, at, uint64_t{1} << 40);
         return b;
       },
       "tensor 'b' (f32 [32], 128 bytes at data offset 1099511627776) runs past the end"},
      {"huge shape",
       [] {
         return raw{}.header(3, 1, 0).tensor("w", {int64_t{1} << 40, int64_t{1} << 40}, 0, 0)
             .align(32).b;
       },
       "tensor 'w': shape [1099511627776, 1099511627776] has too many elements"},
  };
  return cases;
}

class gguf_bad_file : public ::testing::TestWithParam<size_t> {};

TEST_P(gguf_bad_file, is_rejected_with_a_named_error) {
  const auto& c = file_cases()[GetParam()];
  const auto bytes = c.make();
  auto f = gguf_file::parse(bytes.data(), bytes.size(), "bad.gguf");
  ASSERT_FALSE(f) << c.name << ": parsed without error";
  const std::string& msg = f.err().message;
  EXPECT_EQ(msg.rfind("bad.gguf: ", 0), 0u) << msg;
  EXPECT_NE(msg.find(c.expected), std::string::npos)
      << c.name << "\n  got:      " << msg << "\n  expected: ..." << c.expected << "...";
}

INSTANTIATE_TEST_SUITE_P(cases, gguf_bad_file, ::testing::Range<size_t>(0, file_cases().size()),
                         [](const auto& p) {
                           std::string n = file_cases()[p.param].name;
                           for (auto& ch : n) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) {
                               ch = '_';
                             }
                           }
                           return n;
                         });

TEST(gguf_bad_file, every_prefix_of_a_good_file_is_an_error_not_a_crash) {
  const auto good = two_tensors().to_bytes();
  for (size_t n = 0; n < good.size(); ++n) {
    auto f = gguf_file::parse(good.data(), n, "cut.gguf");
    ASSERT_FALSE(f) << "prefix of " << n << " bytes parsed";
  }
  ASSERT_TRUE(gguf_file::parse(good.data(), good.size(), "whole.gguf"));
}

// -- absolute caps: counts a sparse file can "hold" -------------------------------------

/// Writes `header` to a file and extends it, sparse, to `size` bytes: the file then has
/// room for the counts in the header, and only the caps stand in the way.
std::string sparse_file(const std::string& name, const std::vector<std::byte>& header,
                        uint64_t size) {
  const auto path = (test::temp_dir("gguf-caps") / name).string();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  BATON_ASSERT(fd >= 0);
  BATON_ASSERT(::write(fd, header.data(), header.size()) ==
               static_cast<ssize_t>(header.size()));
  BATON_ASSERT(::ftruncate(fd, static_cast<off_t>(size)) == 0);
  ::close(fd);
  return path;
}

TEST(gguf_caps, sparse_files_with_huge_counts_are_refused_before_any_allocation) {
  constexpr uint64_t gib = uint64_t{1} << 30;
  struct sparse_case {
    const char* name;
    std::vector<std::byte> header;
    uint64_t size;
    std::vector<std::string> expected;
  };
  const std::vector<sparse_case> cases = {
      // 4e8 empty strings in 3.2 GB of zeros: 4e8 values would be ~16 GB in memory
      {"array.gguf",
       raw{}.header(3, 0, 1).str("tokenizer.ggml.tokens").put<uint32_t>(9).put<uint32_t>(8)
           .put<uint64_t>(400000000).b,
       4 * gib,
       {"array.gguf: metadata 'tokenizer.ggml.tokens': array count 400000000 at offset 61 is "
        "more than the 16777216 elements a GGUF array may have"}},
      // 4e8 key-value pairs of 13 bytes each fit 6 GiB
      {"metadata.gguf", raw{}.header(3, 0, 400000000).b, 6 * gib,
       {"metadata.gguf: metadata count 400000000 at offset 16 is more than the 1048576 "
        "key-value pairs a GGUF file may have"}},
      // 1e8 tensor infos of 24 bytes each fit 3 GiB
      {"tensors.gguf", raw{}.header(3, 100000000, 0).b, 3 * gib,
       {"tensors.gguf: tensor count 100000000 at offset 8 is more than the 1048576 tensors a "
        "GGUF file may have"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const auto path = sparse_file(c.name, c.header, c.size);
    auto f = gguf_file::open(path);
    std::filesystem::remove(path);
    ASSERT_FALSE(f) << "opened without an error";
    for (const auto& e : c.expected) {
      EXPECT_NE(f.err().message.find(e), std::string::npos)
          << "expected '" << e << "' in:\n" << f.err().message;
    }
  }
}

TEST(gguf_caps, metadata_memory_and_strings_are_capped) {
  gguf_writer w;
  w.set("general.architecture", "test");
  gguf_array bytes;
  bytes.type = gguf_type::uint8;
  bytes.items.assign(1000, gguf_value(uint8_t{7}));
  w.set("blob", bytes);
  w.set("long", std::string(300, 'x'));
  const auto b = w.to_bytes();
  ASSERT_TRUE(gguf_file::parse(b.data(), b.size(), "caps.gguf"));  // the defaults allow it

  gguf_limits small;
  small.max_metadata_bytes = 16 * 1024;  // 1000 values take more (each is a variant)
  ASSERT_GT(1000 * sizeof(gguf_value), small.max_metadata_bytes);
  auto memory = gguf_file::parse(b.data(), b.size(), "caps.gguf", small);
  ASSERT_FALSE(memory);
  EXPECT_NE(memory.err().message.find("caps.gguf: metadata 'blob': the metadata would take more "
                                      "than 16384 bytes in memory"),
            std::string::npos)
      << memory.err().message;

  gguf_limits short_strings;
  short_strings.max_string_bytes = 256;
  auto str = gguf_file::parse(b.data(), b.size(), "caps.gguf", short_strings);
  ASSERT_FALSE(str);
  EXPECT_NE(str.err().message.find("caps.gguf: metadata 'long': string length 300 at offset"),
            std::string::npos)
      << str.err().message;
  EXPECT_NE(str.err().message.find("is more than the 256 bytes a GGUF string may have"),
            std::string::npos)
      << str.err().message;

  gguf_limits few_items;
  few_items.max_array_items = 999;
  auto items = gguf_file::parse(b.data(), b.size(), "caps.gguf", few_items);
  ASSERT_FALSE(items);
  EXPECT_NE(items.err().message.find("metadata 'blob': array count 1000 at offset"),
            std::string::npos)
      << items.err().message;
  EXPECT_NE(items.err().message.find("is more than the 999 elements a GGUF array may have"),
            std::string::npos)
      << items.err().message;
}

TEST(gguf_caps, only_regular_files_are_opened) {
  const auto dir = test::temp_dir("gguf-kinds");
  const auto fifo = (dir / "model.fifo").string();
  std::filesystem::remove(fifo);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  auto f = gguf_file::open(fifo);  // would block forever waiting for a writer if opened
  ASSERT_FALSE(f);
  EXPECT_EQ(f.err().message, fifo + ": not a regular file (a FIFO)");
  std::filesystem::remove(fifo);

  auto d = gguf_file::open(dir.string());
  ASSERT_FALSE(d);
  EXPECT_EQ(d.err().message, dir.string() + ": not a regular file (a directory)");

  auto n = gguf_file::open("/dev/null");
  ASSERT_FALSE(n);
  EXPECT_EQ(n.err().message, "/dev/null: not a regular file (a character device)");
}

// -- model-level checks (a complete llama model made with the writer) ---------------

/// Not the fixture shape (tests/fixture_model.hpp): the expected messages below name these
/// sizes ([64, 96], [64, 65]).
model_shape small_shape() {
  model_shape s;
  s.n_vocab = 64;
  s.n_embd = 64;
  s.n_layer = 2;
  s.n_ff = 96;
  s.n_head = 4;
  s.n_head_kv = 2;
  return s;
}

struct model_case {
  const char* name;
  std::function<void(gguf_writer&)> mutate;  // applied to a good model's writer
  const char* expected;
};

/// Rebuilds a writer without one tensor (the writer has no remove: make it again).
gguf_writer model_writer(const std::function<bool(const std::string&)>& keep_tensor = nullptr,
                         bool untied = false) {
  build_options o;
  o.shape = small_shape();
  o.shape.tied_output = !untied;
  o.type = ggml_type::f32;
  auto w = build_model(o, nullptr);
  BATON_ASSERT(w.ok());
  if (!keep_tensor) {
    return std::move(*w);
  }
  // Copy by re-adding: the only way to drop a tensor is to build without it, so
  // model_builder's tensor list is reproduced by name here.
  gguf_writer out;
  auto bytes = w->to_bytes();
  auto f = gguf_file::parse(bytes.data(), bytes.size(), "tmp");
  BATON_ASSERT(f.ok());
  for (const auto& [k, v] : f->metadata()) {
    out.set(k, v);
  }
  for (const auto& t : f->tensors()) {
    if (keep_tensor(t.name)) {
      std::vector<int64_t> shape(t.ne.begin(), t.ne.begin() + t.n_dims);
      out.add_tensor_bytes(t.name, t.type, shape, std::span<const std::byte>(t.data, t.n_bytes));
    }
  }
  return out;
}

result<std::shared_ptr<const model>> open_model(const gguf_writer& w) {
  auto bytes = std::make_shared<std::vector<std::byte>>(w.to_bytes());
  auto f = gguf_file::parse(bytes->data(), bytes->size(), "m.gguf");
  if (!f) {
    return f.err();
  }
  auto m = model::from_file(std::move(*f));
  static std::vector<std::shared_ptr<std::vector<std::byte>>> keep;  // buffers outlive models
  keep.push_back(bytes);
  return m;
}

TEST(model_bad_file, good_model_loads) {
  auto m = open_model(model_writer());
  ASSERT_TRUE(m) << m.err().message;
  EXPECT_TRUE((*m)->config().tied_output);
  auto u = open_model(model_writer(nullptr, true));
  ASSERT_TRUE(u) << u.err().message;
  EXPECT_FALSE((*u)->config().tied_output);
  EXPECT_EQ((*u)->weights().head(), (*u)->weights().output);
}

TEST(model_bad_file, named_errors) {
  struct c {
    const char* name;
    gguf_writer w;
    const char* expected;
  };
  std::vector<c> cases;
  cases.push_back({"missing tensor",
                   model_writer([](const std::string& n) { return n != "blk.1.ffn_up.weight"; }),
                   "m.gguf: missing tensor 'blk.1.ffn_up.weight'"});
  cases.push_back({"missing embedding",
                   model_writer([](const std::string& n) { return n != "token_embd.weight"; }),
                   "missing tensor 'token_embd.weight'"});
  {
    auto w = model_writer();
    w.set("general.architecture", "qwen2");
    cases.push_back({"unsupported architecture", std::move(w),
                     "m.gguf: unsupported architecture 'qwen2'"});
  }
  {
    auto w = model_writer();
    w.set("llama.block_count", std::string("two"));
    cases.push_back({"hparam of the wrong type", std::move(w),
                     "metadata 'llama.block_count' is string, expected an integer"});
  }
  {
    auto w = model_writer();
    w.set("llama.feed_forward_length", uint32_t{128});
    cases.push_back({"wrong shape", std::move(w),
                     "tensor 'blk.0.ffn_gate.weight' has shape [64, 96], expected [64, 128]"});
  }
  {
    auto w = model_writer();
    w.set("llama.attention.head_count_kv", uint32_t{3});
    cases.push_back({"heads not a multiple", std::move(w),
                     "'llama.attention.head_count' (4) is not a multiple of "
                     "'llama.attention.head_count_kv' (3)"});
  }
  {
    auto w = model_writer();
    w.set("llama.vocab_size", uint32_t{65});
    cases.push_back({"vocab mismatch", std::move(w),
                     "tensor 'token_embd.weight' has shape [64, 64], expected [64, 65]"});
  }
  {
    auto w = model_writer();
    w.add_tensor("blk.2.attn_q.weight", ggml_type::f32, {64, 64});
    cases.push_back({"unexpected tensor", std::move(w),
                     "unexpected tensor 'blk.2.attn_q.weight' for a 2-layer llama model"});
  }
  {
    auto w = model_writer([](const std::string& n) { return n != "blk.0.attn_q.weight"; });
    w.add_tensor("blk.0.attn_q.weight", ggml_type::q5_0, {64, 64});
    cases.push_back({"type baton cannot compute with", std::move(w),
                     "tensor 'blk.0.attn_q.weight' has type q5_0, which baton does not compute"});
  }
  {
    auto w = model_writer([](const std::string& n) { return n != "blk.1.ffn_norm.weight"; });
    w.add_tensor("blk.1.ffn_norm.weight", ggml_type::f16, {64});
    cases.push_back({"a layer norm not in f32", std::move(w),
                     "tensor 'blk.1.ffn_norm.weight' has type f16, expected f32"});
  }
  {
    // found by scripts/fuzz.sh: a huge block_count once sized a vector before any check
    auto w = model_writer();
    w.set("llama.block_count", uint32_t{1u << 30});
    cases.push_back({"block count the file cannot hold", std::move(w),
                     "'llama.block_count' is 1073741824 but the file has only 21 tensors"});
  }
  {
    gguf_writer w;
    w.set("general.architecture", "llama");
    cases.push_back({"missing hparam", std::move(w), "missing metadata 'llama.block_count'"});
  }
  for (auto& k : cases) {
    auto m = open_model(k.w);
    ASSERT_FALSE(m) << k.name;
    EXPECT_NE(m.err().message.find(k.expected), std::string::npos)
        << k.name << "\n  got:      " << m.err().message << "\n  expected: ..." << k.expected;
  }
}

}  // namespace
}  // namespace baton
