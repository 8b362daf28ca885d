// The JSON Schema compiler and the byte-level matcher (runtime/grammar): which documents
// a schema accepts and refuses, byte by byte, and what it costs to close one; then the
// token masks over a small vocabulary with multi-byte tokens that cross value
// boundaries, and the max_tokens budget that keeps a constrained reply closable.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "runtime/grammar/json_matcher.hpp"
#include "runtime/grammar/json_schema.hpp"
#include "runtime/grammar/token_mask.hpp"
#include "runtime/text/tokenizer.hpp"
#include "runtime/text/vocab.hpp"

namespace baton::grammar {
namespace {

std::shared_ptr<json_grammar> compiled(const std::string& schema, bool strict = true) {
  schema_options o;
  o.strict = strict;
  auto g = compile_json_schema(schema, o);
  EXPECT_TRUE(g.ok()) << schema << ": " << (g.ok() ? "" : g.err().message);
  return g.ok() ? *g : nullptr;
}

/// Whether `doc` is a whole document of `schema`.
bool accepts(const std::string& schema, const std::string& doc) {
  auto g = compiled(schema);
  if (!g) {
    return false;
  }
  json_matcher m(g);
  auto s = m.start();
  return m.feed(s, doc) && m.accepting(s);
}

/// Whether `text` is a prefix of some document of `schema`.
bool continues(const std::string& schema, const std::string& text) {
  auto g = compiled(schema);
  json_matcher m(g);
  auto s = m.start();
  return m.feed(s, text);
}

TEST(grammar_json, objects_need_their_required_keys_and_refuse_unknown_or_repeated_ones) {
  const std::string s =
      R"({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"}},)"
      R"("required":["a"],"additionalProperties":false})";
  EXPECT_TRUE(accepts(s, R"({"a": 1})"));
  EXPECT_TRUE(accepts(s, R"({ "b" : "x" , "a" : -5 })"));
  EXPECT_FALSE(accepts(s, R"({})"));
  EXPECT_FALSE(accepts(s, R"({"b": "x"})"));
  EXPECT_FALSE(accepts(s, R"({"a": 1, "c": 2})"));
  EXPECT_FALSE(accepts(s, R"({"a": 1.5})"));
  EXPECT_FALSE(accepts(s, R"({"a": 1, "a": 2})"));
  EXPECT_FALSE(continues(s, R"({"c)"));   // no declared name starts with c
  EXPECT_TRUE(continues(s, R"({"a": 1, )"));
  EXPECT_FALSE(continues(s, R"({"a": 1, "a)"));  // a is taken and nothing else starts so
}

TEST(grammar_json, additional_properties_default_to_any_value_and_may_be_a_schema) {
  EXPECT_TRUE(accepts(R"({"type":"object","properties":{"a":{"type":"integer"}}})",
                      R"({"z": [1, {"q": null}], "a": 2})"));
  const std::string s = R"({"type":"object","additionalProperties":{"type":"boolean"}})";
  EXPECT_TRUE(accepts(s, R"({"x": true, "y": false})"));
  EXPECT_FALSE(accepts(s, R"({"x": 1})"));
}

TEST(grammar_json, strings_count_code_points_decode_escapes_and_refuse_control_bytes) {
  const std::string s = R"({"type":"string","minLength":2,"maxLength":3})";
  EXPECT_TRUE(accepts(s, R"("ab")"));
  EXPECT_TRUE(accepts(s, "\"日本語\""));
  EXPECT_TRUE(accepts(s, R"("\u00e9\n")"));
  EXPECT_TRUE(accepts(s, R"("\ud83d\ude00x")"));  // a surrogate pair is one code point
  EXPECT_FALSE(accepts(s, R"("a")"));
  EXPECT_FALSE(accepts(s, R"("abcd")"));
  EXPECT_FALSE(accepts(s, "\"a\nb\""));
  EXPECT_FALSE(accepts(s, R"("\x41")"));
  EXPECT_FALSE(accepts(s, "\"\xC3\x28\""));  // not UTF-8
}

TEST(grammar_json, patterns_search_unless_anchored_and_formats_match_whole_strings) {
  EXPECT_TRUE(accepts(R"({"type":"string","pattern":"^[a-z]+$"})", R"("abc")"));
  EXPECT_FALSE(accepts(R"({"type":"string","pattern":"^[a-z]+$"})", R"("ab1")"));
  EXPECT_TRUE(accepts(R"({"type":"string","pattern":"[0-9]"})", R"("ab1cd")"));
  EXPECT_FALSE(accepts(R"({"type":"string","pattern":"[0-9]"})", R"("abcd")"));
  EXPECT_TRUE(accepts(R"({"type":"string","format":"date"})", R"("2024-01-31")"));
  EXPECT_FALSE(accepts(R"({"type":"string","format":"date"})", R"("2024-13-01")"));
  EXPECT_TRUE(accepts(R"({"type":"string","format":"date-time"})", R"("2024-01-31T10:20:30Z")"));
  EXPECT_TRUE(accepts(R"({"type":"string","format":"uuid"})",
                      R"("123e4567-e89b-12d3-a456-426614174000")"));
  EXPECT_FALSE(accepts(R"({"type":"string","format":"ipv4"})", R"("256.1.1.1")"));
  // a format the grammar does not know is an annotation
  EXPECT_TRUE(accepts(R"({"type":"string","format":"flag-topic"})", R"("x")"));
}

TEST(grammar_json, enum_and_const_allow_exactly_their_values) {
  const std::string s = R"({"enum":["red","green",3,null,true,{"k":[1]}]})";
  for (const char* ok : {R"("red")", R"("green")", "3", "3.0", "null", "true", R"({"k": [1]})"}) {
    EXPECT_TRUE(accepts(s, ok)) << ok;
  }
  for (const char* no : {R"("blue")", R"("re")", "4", "false", R"({"k": [1, 2]})", R"({})"}) {
    EXPECT_FALSE(accepts(s, no)) << no;
  }
  EXPECT_TRUE(accepts(R"({"const":"a\"b"})", R"("a\"b")"));
  EXPECT_FALSE(accepts(R"({"const":"a\"b"})", R"("a\"bc")"));
}

TEST(grammar_json, numbers_keep_their_bounds_and_refuse_prefixes_that_cannot_reach_them) {
  const std::string unit = R"({"type":"number","minimum":0,"maximum":1})";
  EXPECT_TRUE(accepts(unit, "0.5"));
  EXPECT_TRUE(accepts(unit, "1"));
  EXPECT_FALSE(accepts(unit, "1.5"));
  EXPECT_FALSE(accepts(unit, "-0.1"));
  EXPECT_FALSE(continues(unit, "2"));
  EXPECT_FALSE(accepts(R"({"type":"number","exclusiveMaximum":1})", "1"));
  EXPECT_TRUE(accepts(R"({"type":"number","exclusiveMaximum":1})", "0.999"));
  const std::string big = R"({"type":"integer","minimum":100})";
  EXPECT_TRUE(continues(big, "1"));  // 100 and up are still reachable
  EXPECT_FALSE(accepts(big, "10"));
  EXPECT_TRUE(accepts(big, "100"));
  EXPECT_TRUE(accepts(R"({"type":"integer","multipleOf":5})", "15"));
  EXPECT_FALSE(accepts(R"({"type":"integer","multipleOf":5})", "12"));
  EXPECT_FALSE(accepts(R"({"type":"integer"})", "01"));
  EXPECT_TRUE(accepts(R"({"type":"number"})", "-1.25e-3"));
  EXPECT_FALSE(accepts(R"({"type":"number"})", "1."));
  EXPECT_FALSE(accepts(R"({"type":"integer"})", "1e3"));
}

TEST(grammar_json, arrays_keep_their_item_schemas_and_counts) {
  const std::string s = R"({"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":3})";
  EXPECT_TRUE(accepts(s, "[1, 2]"));
  EXPECT_TRUE(accepts(s, "[1,2,3]"));
  EXPECT_FALSE(accepts(s, "[1]"));
  EXPECT_FALSE(accepts(s, "[1, 2, 3, 4]"));
  EXPECT_FALSE(accepts(s, R"([1, "2"])"));
  const std::string tuple = R"({"prefixItems":[{"type":"string"},{"type":"integer"}],"items":false})";
  EXPECT_TRUE(accepts(tuple, R"(["a", 1])"));
  EXPECT_FALSE(accepts(tuple, R"(["a", 1, 2])"));
  EXPECT_FALSE(accepts(tuple, R"([1, "a"])"));
}

TEST(grammar_json, any_of_forks_where_a_value_starts_and_keeps_the_branches_that_fit) {
  const std::string s = R"({"anyOf":[{"type":"string"},{"type":"integer","minimum":10},)"
                        R"({"type":"object","properties":{"a":{"const":1}},"required":["a"]},)"
                        R"({"type":"object","properties":{"b":{"const":2}},"required":["b"]}]})";
  EXPECT_TRUE(accepts(s, R"("x")"));
  EXPECT_TRUE(accepts(s, "12"));
  EXPECT_FALSE(accepts(s, "5"));
  EXPECT_TRUE(continues(s, "1"));
  EXPECT_TRUE(accepts(s, R"({"a": 1})"));
  EXPECT_TRUE(accepts(s, R"({"b": 2})"));
  EXPECT_FALSE(accepts(s, R"({"a": 2})"));
  EXPECT_TRUE(accepts(R"({"type":["string","null"]})", "null"));
  EXPECT_TRUE(accepts(R"({"type":"string","nullable":true})", "null"));
}

TEST(grammar_json, refs_resolve_pointers_and_recurse) {
  const std::string tree =
      R"({"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},)"
      R"("kids":{"type":"array","items":{"$ref":"#/$defs/node"}}},"additionalProperties":false}},)"
      R"("$ref":"#/$defs/node"})";
  EXPECT_TRUE(accepts(tree, R"({"v": 1, "kids": [{"kids": [{"v": 3}]}, {}]})"));
  EXPECT_FALSE(accepts(tree, R"({"kids": [{"x": 1}]})"));
  EXPECT_TRUE(accepts(R"({"definitions":{"a/b":{"type":"integer"}},"$ref":"#/definitions/a~1b"})", "7"));
  schema_error why;
  EXPECT_FALSE(compile_json_schema(R"({"$ref":"other.json#/x"})", {}, &why).ok());
  EXPECT_EQ(why.keyword, "$ref");
  EXPECT_FALSE(compile_json_schema(R"({"$ref":"#/definitions/missing"})", {}, &why).ok());
  EXPECT_EQ(why.keyword, "$ref");
}

TEST(grammar_json, all_of_intersects_objects_numbers_and_strings) {
  const std::string s =
      R"({"allOf":[{"properties":{"a":{"type":"string"}},"required":["a"]},)"
      R"({"properties":{"b":{"type":"integer","minimum":0}},"required":["b"]},)"
      R"({"properties":{"b":{"maximum":9}}}]})";
  EXPECT_TRUE(accepts(s, R"({"a": "x", "b": 3})"));
  EXPECT_FALSE(accepts(s, R"({"a": "x"})"));
  EXPECT_FALSE(accepts(s, R"({"a": "x", "b": 10})"));
  EXPECT_FALSE(compile_json_schema(R"({"allOf":[{"type":"string"},{"type":"integer"}]})", {}).ok());
  EXPECT_TRUE(accepts(R"({"allOf":[{"type":"string","pattern":"a"},{"pattern":"b"}]})", R"("ab")"));
  EXPECT_FALSE(accepts(R"({"allOf":[{"type":"string","pattern":"a"},{"pattern":"b"}]})", R"("aa")"));
}

TEST(grammar_json, two_recursive_schemas_met_through_all_of_are_an_error_not_a_crash) {
  // each intersection of A and B needs the intersection of A and B again, forever
  const std::string s =
      R"({"$defs":{"A":{"type":"object","properties":{"c":{"$ref":"#/$defs/A"}}},)"
      R"("B":{"type":"object","properties":{"c":{"$ref":"#/$defs/B"},"d":{"type":"integer"}}}},)"
      R"("allOf":[{"$ref":"#/$defs/A"},{"$ref":"#/$defs/B"}]})";
  for (bool strict : {true, false}) {
    schema_options o;
    o.strict = strict;
    schema_error why;
    EXPECT_FALSE(compile_json_schema(s, o, &why).ok());
    EXPECT_EQ(why.keyword, "allOf");
    EXPECT_NE(why.message.find("recursive intersection"), std::string::npos) << why.message;
  }
}

TEST(grammar_json, pattern_properties_pick_the_value_schema_by_key) {
  const std::string s = R"({"type":"object","patternProperties":{"^x-":{"type":"integer"}},)"
                        R"("properties":{"name":{"type":"string"}},"additionalProperties":false})";
  EXPECT_TRUE(accepts(s, R"({"x-a": 1, "name": "n"})"));
  EXPECT_FALSE(accepts(s, R"({"x-a": "s"})"));
  EXPECT_FALSE(accepts(s, R"({"y": 1})"));
  EXPECT_TRUE(accepts(R"({"propertyNames":{"maxLength":2}})", R"({"ab": 1})"));
  EXPECT_FALSE(accepts(R"({"propertyNames":{"maxLength":2}})", R"({"abc": 1})"));
}

TEST(grammar_json, a_keyword_it_cannot_enforce_is_an_error_naming_it_and_where_when_strict) {
  schema_error why;
  auto g = compile_json_schema(R"({"properties":{"tags":{"type":"array","uniqueItems":true}}})", {}, &why);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(why.keyword, "uniqueItems");
  EXPECT_EQ(why.pointer, "/properties/tags");
  EXPECT_NE(why.message.find("/properties/tags"), std::string::npos) << why.message;
  EXPECT_FALSE(compile_json_schema(R"({"not":{"type":"string"}})", {}, &why).ok());
  EXPECT_EQ(why.keyword, "not");
  EXPECT_EQ(why.pointer, "/");
  schema_options lenient;
  lenient.strict = false;
  auto l = compile_json_schema(R"({"type":"array","uniqueItems":true})", lenient, &why);
  ASSERT_TRUE(l.ok());
  ASSERT_EQ((*l)->warnings.size(), 1u);
  EXPECT_NE((*l)->warnings[0].find("uniqueItems"), std::string::npos);
  // not JSON, a bad type, a pattern that is not a regex
  EXPECT_FALSE(compile_json_schema("{", {}, &why).ok());
  EXPECT_FALSE(compile_json_schema(R"({"type":"text"})", {}, &why).ok());
  EXPECT_EQ(why.keyword, "type");
  EXPECT_FALSE(compile_json_schema(R"j({"type":"string","pattern":"a(?=b)"})j", {}, &why).ok());
  EXPECT_EQ(why.keyword, "pattern");
  EXPECT_FALSE(compile_json_schema(std::string(10000, '[') + std::string(10000, ']'), {}, &why).ok());
  EXPECT_FALSE(compile_json_schema(R"({"type":"string","minLength":5,"maxLength":2})", {}, &why).ok());
}

TEST(grammar_json, whitespace_is_bounded_so_a_model_cannot_pad_forever) {
  const std::string s = R"({"type":"array"})";
  EXPECT_TRUE(accepts(s, "[ 1 ,\n\t2 ]"));
  EXPECT_FALSE(continues(s, "[" + std::string(100, ' ')));
}

TEST(grammar_json, the_closing_cost_is_the_shortest_way_to_a_whole_document) {
  auto g = compiled(R"({"type":"object","properties":{"a":{"type":"string","minLength":2},)"
                    R"("b":{"type":"integer","minimum":100}},"required":["a","b"]})");
  json_matcher m(g);
  auto s = m.start();
  EXPECT_EQ(m.min_close_bytes(s), static_cast<int64_t>(std::string(R"({"a":"xx","b":100})").size()));
  ASSERT_TRUE(m.feed(s, R"({"b": 1)"));
  EXPECT_EQ(m.min_close_bytes(s), static_cast<int64_t>(std::string(R"(00,"a":"xx"})").size()));
  ASSERT_TRUE(m.feed(s, R"(00, "a": "x)"));
  EXPECT_EQ(m.min_close_bytes(s), 3);  // x"}
  ASSERT_TRUE(m.feed(s, R"(y"})"));
  EXPECT_EQ(m.min_close_bytes(s), 0);
  EXPECT_TRUE(m.accepting(s));
}

// -- token masks ----------------------------------------------------------------------

std::string byte_char(uint8_t b) {
  // GPT-2's byte-to-unicode map: printable bytes stand for themselves
  auto printable = [](int c) {
    return (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255);
  };
  int code = b;
  if (!printable(b)) {
    int n = 0;
    for (int c = 0; c < b; ++c) {
      n += printable(c) ? 0 : 1;
    }
    code = 256 + n;
  }
  std::string out;
  if (code < 0x80) {
    out += static_cast<char>(code);
  } else {
    out += static_cast<char>(0xC0 | (code >> 6));
    out += static_cast<char>(0x80 | (code & 0x3F));
  }
  return out;
}

/// Every byte, then multi-byte tokens (ids from 256 in this order), then <|eot_id|>.
const std::vector<std::string>& extra_tokens() {
  static const std::vector<std::string> t = {"{\"", "\":", "\",", "\"}", " \"", "abc", "12",
                                             "true", "\"a", "a\":", "日本"};
  return t;
}

const tokenizer& small_tokenizer() {
  static const tokenizer tok = [] {
    vocab_spec v;
    v.model = "gpt2";
    v.pre = "llama-bpe";
    for (int b = 0; b < 256; ++b) {
      v.tokens.push_back(byte_char(static_cast<uint8_t>(b)));
      v.token_types.push_back(1);
    }
    for (const auto& t : extra_tokens()) {
      std::string enc;
      for (unsigned char c : t) {
        enc += byte_char(c);
      }
      v.tokens.push_back(enc);
      v.token_types.push_back(1);
    }
    v.tokens.push_back("<|eot_id|>");
    v.token_types.push_back(3);
    v.eos_id = static_cast<int32_t>(v.tokens.size() - 1);
    v.add_bos = false;
    auto t = tokenizer::create(std::move(v));
    EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.err().message);
    return std::move(*t);
  }();
  return tok;
}

int32_t id_of(const std::string& piece) {
  if (piece.size() == 1) {
    return static_cast<unsigned char>(piece[0]);
  }
  const auto& t = extra_tokens();
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == piece) {
      return 256 + static_cast<int32_t>(i);
    }
  }
  ADD_FAILURE() << "no token " << piece;
  return -1;
}

bool allowed(const std::vector<uint64_t>& mask, int32_t id) {
  return mask[static_cast<size_t>(id) / 64] >> (static_cast<size_t>(id) % 64) & 1;
}

TEST(grammar_mask, tokens_that_cross_value_boundaries_are_judged_byte_by_byte) {
  const auto trie = token_trie::build(small_tokenizer());
  json_constraint c(compiled(R"({"type":"object","properties":{"a":{"type":"integer"}},)"
                             R"("required":["a"],"additionalProperties":false})"),
                    trie);
  std::vector<uint64_t> mask;
  c.fill_mask(-1, mask);
  EXPECT_TRUE(allowed(mask, id_of("{")));
  EXPECT_TRUE(allowed(mask, id_of("{\"")));
  EXPECT_TRUE(allowed(mask, id_of(" ")));
  EXPECT_FALSE(allowed(mask, id_of("[")));
  EXPECT_FALSE(allowed(mask, id_of(" \"")));
  EXPECT_FALSE(allowed(mask, small_tokenizer().eos_id()));
  ASSERT_TRUE(c.commit(id_of("{\"")));
  c.fill_mask(-1, mask);
  EXPECT_TRUE(allowed(mask, id_of("a\":")));
  EXPECT_TRUE(allowed(mask, id_of("a")));
  EXPECT_FALSE(allowed(mask, id_of("abc")));  // not a declared name, and no others allowed
  EXPECT_FALSE(allowed(mask, id_of("\":")));  // "" is not a declared name
  ASSERT_TRUE(c.commit(id_of("a\":")));
  c.fill_mask(-1, mask);
  EXPECT_TRUE(allowed(mask, id_of("12")));
  EXPECT_FALSE(allowed(mask, id_of("true")));
  EXPECT_FALSE(allowed(mask, id_of("\"a")));
  ASSERT_TRUE(c.commit(id_of("12")));
  EXPECT_FALSE(c.commit(id_of("abc")));  // refused: the state stays
  ASSERT_TRUE(c.commit(id_of("}")));
  c.fill_mask(-1, mask);
  EXPECT_TRUE(allowed(mask, small_tokenizer().eos_id()));
  EXPECT_FALSE(allowed(mask, id_of(" ")));
  EXPECT_TRUE(c.commit(small_tokenizer().eos_id()));
  EXPECT_TRUE(c.finished());
}

TEST(grammar_mask, inside_a_free_string_every_plain_token_is_allowed_and_max_length_counts_code_points) {
  const auto trie = token_trie::build(small_tokenizer());
  json_constraint c(compiled(R"({"type":"string","maxLength":2})"), trie);
  std::vector<uint64_t> mask;
  ASSERT_TRUE(c.commit(id_of("\"")));
  c.fill_mask(-1, mask);
  EXPECT_TRUE(allowed(mask, id_of("12")));
  EXPECT_TRUE(allowed(mask, id_of("日本")));  // 2 code points, 6 bytes
  EXPECT_FALSE(allowed(mask, id_of("abc")));
  EXPECT_TRUE(allowed(mask, id_of("\"")));
  EXPECT_FALSE(allowed(mask, id_of("\"}")));  // a root string is not in an object
  ASSERT_TRUE(c.commit(id_of("a")));
  c.fill_mask(-1, mask);
  EXPECT_TRUE(allowed(mask, id_of("b")));
  EXPECT_FALSE(allowed(mask, id_of("12")));
}

TEST(grammar_mask, when_the_tokens_left_only_just_suffice_only_the_shortest_completion_is_allowed) {
  const auto trie = token_trie::build(small_tokenizer());
  json_constraint c(compiled(R"({"type":"object","properties":{"a":{"type":"string"}},"required":["a"]})"),
                    trie);
  std::vector<uint64_t> mask;
  // {"a":""} is 8 bytes: with 8 tokens left, one byte a token, nothing may be wasted
  c.fill_mask(8, mask);
  EXPECT_TRUE(allowed(mask, id_of("{")));
  EXPECT_TRUE(allowed(mask, id_of("{\"")));
  EXPECT_FALSE(allowed(mask, id_of(" ")));
  c.fill_mask(7, mask);
  EXPECT_TRUE(allowed(mask, id_of("{\"")));  // 2 bytes for one token: 6 left for 6 bytes
  EXPECT_FALSE(allowed(mask, id_of("{")));
  ASSERT_TRUE(c.commit(id_of("{\"")));
  ASSERT_TRUE(c.commit(id_of("a\":")));
  ASSERT_TRUE(c.commit(id_of("\"")));
  c.fill_mask(10, mask);
  EXPECT_TRUE(allowed(mask, id_of("abc")));
  c.fill_mask(2, mask);  // "} must follow
  EXPECT_FALSE(allowed(mask, id_of("abc")));
  EXPECT_TRUE(allowed(mask, id_of("\"")));
  EXPECT_TRUE(allowed(mask, id_of("\"}")));
  c.fill_mask(1, mask);
  EXPECT_FALSE(allowed(mask, id_of("\"")));
  EXPECT_TRUE(allowed(mask, id_of("\"}")));
}

/// The mask by its definition, token by token: those whose bytes the matcher takes after
/// `prefix` and after which the document still closes in the tokens left (`remaining`
/// counts this one; -1: no limit), and end-of-generation where the document is whole.
std::vector<uint64_t> reference_mask(const std::shared_ptr<json_grammar>& g, const std::string& prefix,
                                     int64_t remaining) {
  const auto& tok = small_tokenizer();
  std::vector<uint64_t> mask((static_cast<size_t>(tok.n_vocab()) + 63) / 64, 0);
  auto set = [&](int32_t id) { mask[static_cast<size_t>(id) / 64] |= uint64_t{1} << (id % 64); };
  json_matcher m(g);
  auto s = m.start();
  EXPECT_TRUE(m.feed(s, prefix)) << prefix;
  if (m.accepting(s)) {
    set(tok.eos_id());
  }
  for (int32_t id = 0; id < tok.n_vocab() && remaining != 0; ++id) {
    if (id == tok.eos_id()) {
      continue;
    }
    auto t = s;
    if (m.feed(t, *tok.token_piece(id, true)) && (remaining < 0 || m.min_close_bytes(t) <= remaining - 1)) {
      set(id);
    }
  }
  return mask;
}

/// Pieces of the masks that differ, for a failure message.
std::string mask_diff(const std::vector<uint64_t>& got, const std::vector<uint64_t>& want) {
  std::string out;
  for (size_t i = 0; i < got.size() * 64; ++i) {
    const bool a = got[i / 64] >> (i % 64) & 1, b = want[i / 64] >> (i % 64) & 1;
    if (a != b) {
      auto piece = small_tokenizer().token_piece(static_cast<int32_t>(i), true);
      out += std::string(a ? " +" : " -") + "[" + (piece ? std::string(*piece) : "?") + "]";
    }
  }
  return out;
}

TEST(grammar_mask, masks_equal_their_definition_token_by_token_with_and_without_a_budget) {
  // regex strings and keys (walked on plain tokens, cached by their top frame), free
  // strings and keys, anyOf threads in one string, numbers and structure (cached by
  // state); each prefix under every budget from none to tight, the same state asked
  // again and again so that cached masks must hold for every budget
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {R"({"type":"object","properties":{"a":{"type":"string","pattern":"^[a-z]*q$"}},"required":["a"]})",
       {"", "{", R"({"a": ")", R"({"a": "ab)", R"({"a": "abq)", R"({"a": "abq")"}},
      {R"({"enum":["abc","abd","日本語",12]})", {"", "\"", "\"ab", "\"日", "1"}},
      {R"({"type":"string","format":"date"})", {"\"", "\"2024-", "\"2024-01-3"}},
      {R"({"type":"string","minLength":3,"maxLength":5})", {"\"", "\"a", "\"abc", "\"abcd"}},
      {R"({"type":"object","properties":{"a":{"const":1}},"additionalProperties":{"type":"string","minLength":5}})",
       {"{", "{\"", "{\"a", "{\"b", R"({"a": 1, ")"}},
      {R"({"type":"object","patternProperties":{"^x-[a-z]+$":{"type":"integer"}},"additionalProperties":false})",
       {"{", "{\"", "{\"x-", "{\"x-ab"}},
      {R"({"anyOf":[{"type":"object","properties":{"k":{"type":"string"},"a":{"type":"integer"}},"required":["a"]},)"
       R"({"type":"object","properties":{"k":{"type":"string","maxLength":2},"b":{"type":"boolean"}},"required":["b"]}]})",
       {"{", R"({"k": ")", R"({"k": "x)", R"({"k": "xy)"}},
      {R"({"type":"array","items":{"type":"number","minimum":10},"minItems":2})", {"[", "[1", "[12, ", "[12, 1"}},
  };
  const auto trie = token_trie::build(small_tokenizer());
  const std::vector<int64_t> budgets = {-1, 40, 9, 7, 6, 5, 4, 3, 2, 1, -1};
  std::vector<uint64_t> mask;
  for (const auto& [schema, prefixes] : cases) {
    auto g = compiled(schema);
    ASSERT_TRUE(g);
    std::vector<std::vector<std::vector<uint64_t>>> want(prefixes.size());  // [prefix][budget]
    for (size_t p = 0; p < prefixes.size(); ++p) {
      for (int64_t remaining : budgets) {
        want[p].push_back(reference_mask(g, prefixes[p], remaining));
      }
    }
    for (int round = 0; round < 2; ++round) {
      for (size_t p = 0; p < prefixes.size(); ++p) {
        json_constraint c(g, trie);
        for (unsigned char b : prefixes[p]) {
          ASSERT_TRUE(c.commit(b)) << schema << " " << prefixes[p];
        }
        for (size_t k = 0; k < budgets.size(); ++k) {
          c.fill_mask(budgets[k], mask);
          EXPECT_EQ(mask, want[p][k]) << schema << " after [" << prefixes[p] << "] with " << budgets[k]
                                      << " tokens left:" << mask_diff(mask, want[p][k]);
        }
      }
    }
  }
}

TEST(grammar_mask, a_pattern_string_under_a_tight_budget_allows_only_what_still_closes) {
  const auto trie = token_trie::build(small_tokenizer());
  json_constraint c(compiled(R"({"type":"object","properties":{"a":{"type":"string","pattern":"^[a-z]*q$"}},)"
                             R"("required":["a"]})"),
                    trie);
  for (const char* t : {"{\"", "a\":", "\""}) {
    ASSERT_TRUE(c.commit(id_of(t)));
  }
  std::vector<uint64_t> mask;
  c.fill_mask(-1, mask);
  EXPECT_TRUE(allowed(mask, id_of("abc")));
  EXPECT_FALSE(allowed(mask, id_of("12")));  // not [a-z]
  EXPECT_FALSE(allowed(mask, id_of("\"")));  // the pattern wants a q first
  // after abc: q"} are due, 3 tokens at least
  c.fill_mask(4, mask);
  EXPECT_TRUE(allowed(mask, id_of("abc")));
  EXPECT_TRUE(allowed(mask, id_of("q")));
  c.fill_mask(3, mask);
  EXPECT_FALSE(allowed(mask, id_of("abc")));
  EXPECT_FALSE(allowed(mask, id_of("a")));
  EXPECT_TRUE(allowed(mask, id_of("q")));  // then "}
  c.fill_mask(2, mask);
  EXPECT_FALSE(allowed(mask, id_of("q")));
}

}  // namespace
}  // namespace baton::grammar
