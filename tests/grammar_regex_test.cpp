// runtime/grammar/regex: ECMA-262 patterns and literals as a lazy byte-level DFA over
// the product of several components, its masks, its distances, and what it refuses.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "runtime/grammar/regex.hpp"

namespace baton::grammar {
namespace {

std::shared_ptr<regex_set> compile_one(const std::string& source, regex_kind kind) {
  auto r = regex_set::compile({{source, kind}});
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.err().message);
  return r.ok() ? *r : nullptr;
}

regex_state feed(regex_set& set, std::string_view s, regex_state from = 0) {
  regex_state q = from;
  for (char c : s) {
    if (q == k_dead) {
      return k_dead;
    }
    q = set.next(q, static_cast<uint8_t>(c));
  }
  return q;
}

/// Whether every component in `need` matches all of `s`.
bool matches(regex_set& set, std::string_view s, uint64_t need) {
  const regex_state q = feed(set, s);
  return q != k_dead && (set.accept_mask(q) & need) == need;
}

bool search(const std::string& pattern, std::string_view s) {
  auto set = compile_one(pattern, regex_kind::search);
  return set && matches(*set, s, 1);
}

bool full(const std::string& pattern, std::string_view s) {
  auto set = compile_one(pattern, regex_kind::full);
  return set && matches(*set, s, 1);
}

std::string compile_error(const std::string& pattern) {
  auto r = regex_set::compile({{pattern, regex_kind::search}});
  return r.ok() ? std::string("(compiled)") : r.err().message;
}

TEST(grammar_regex, search_anchors) {
  EXPECT_TRUE(search("ab", "xaby"));
  EXPECT_FALSE(search("^ab", "xab"));
  EXPECT_TRUE(search("^ab", "abx"));
  EXPECT_TRUE(search("ab$", "xab"));
  EXPECT_FALSE(search("ab$", "abx"));
  EXPECT_TRUE(search("^a|b$", "ax"));
  EXPECT_TRUE(search("^a|b$", "xb"));
  EXPECT_FALSE(search("^a|b$", "xa"));
  EXPECT_FALSE(search("^a|b$", "bx"));
  EXPECT_TRUE(search("^$", ""));
  EXPECT_FALSE(search("^$", "a"));
  EXPECT_TRUE(search("", "anything"));
  EXPECT_FALSE(search("a^b", "ab"));
  EXPECT_FALSE(search("a$b", "ab"));
  EXPECT_TRUE(search("$^", ""));
  EXPECT_TRUE(search("(^|,)x(,|$)", "a,x"));
  EXPECT_FALSE(search("(^|,)x(,|$)", "ax"));
}

TEST(grammar_regex, full_against_search) {
  EXPECT_TRUE(full("ab", "ab"));
  EXPECT_FALSE(full("ab", "xab"));
  EXPECT_FALSE(full("ab", "abx"));
  EXPECT_TRUE(search("ab", "xabx"));
  EXPECT_TRUE(full("a|ab", "ab"));
  EXPECT_TRUE(full("^ab$", "ab"));
}

TEST(grammar_regex, classes) {
  EXPECT_TRUE(full("[abc]+", "cab"));
  EXPECT_FALSE(full("[abc]+", "cad"));
  EXPECT_TRUE(full("[a-f0-9]{4}", "0af9"));
  EXPECT_TRUE(full("[^a]", "b"));
  EXPECT_FALSE(full("[^a]", "a"));
  EXPECT_TRUE(full("[^a]", "é"));
  EXPECT_TRUE(full("[^a]", "\xF0\x9F\x98\x80"));  // U+1F600, four bytes
  EXPECT_TRUE(full(".", "日"));
  EXPECT_TRUE(full("..", "日本"));
  EXPECT_FALSE(full(".", "日本"));
  EXPECT_FALSE(full(".", "\n"));
  EXPECT_FALSE(full(".", "\xE2\x80\xA8"));  // U+2028
  EXPECT_TRUE(full("[\\s\\S]", "\n"));
  EXPECT_TRUE(full("[^]", "\n"));
  EXPECT_FALSE(full("[]", ""));
  EXPECT_FALSE(full("[]", "a"));
  EXPECT_TRUE(full("[-a]+", "-a"));
  EXPECT_TRUE(full("[a-]+", "-a"));
  EXPECT_TRUE(full("[\\d-z]+", "1-z"));
  EXPECT_TRUE(full("[\\]\\[]+", "]["));
  EXPECT_TRUE(full("[\\u00e0-\\u00ff]", "é"));
  EXPECT_FALSE(full("[\\u00e0-\\u00ff]", "e"));
  EXPECT_TRUE(full("[а-я]+", "привет"));
  EXPECT_TRUE(full("[\\u{1F600}-\\u{1F64F}]", "\xF0\x9F\x98\x80"));
  EXPECT_TRUE(full("\\uD83D\\uDE00", "\xF0\x9F\x98\x80"));
  EXPECT_TRUE(full("a]", "a]"));
  EXPECT_FALSE(full("\xC3\xA9", "\xC3"));  // half a code point
  EXPECT_FALSE(full(".", "\xFF"));          // not UTF-8
}

TEST(grammar_regex, shorthand_classes) {
  EXPECT_TRUE(full("\\d+", "0123456789"));
  EXPECT_FALSE(full("\\d", "a"));
  EXPECT_FALSE(full("\\d", "٣"));  // ECMA: ASCII digits only
  EXPECT_TRUE(full("\\D", "a"));
  EXPECT_TRUE(full("\\w+", "aZ_9"));
  EXPECT_FALSE(full("\\w", "-"));
  EXPECT_FALSE(full("\\w", "é"));
  EXPECT_TRUE(full("\\W", "é"));
  for (const char* ws : {" ", "\t", "\n", "\v", "\f", "\r", "\xC2\xA0", "\xE3\x80\x80",
                         "\xEF\xBB\xBF", "\xE2\x80\xA9"}) {
    EXPECT_TRUE(full("\\s", ws)) << ws;
    EXPECT_FALSE(full("\\S", ws)) << ws;
  }
  EXPECT_TRUE(full("\\S", "x"));
}

TEST(grammar_regex, escapes) {
  EXPECT_TRUE(full("\\t\\n\\r\\v\\f", "\t\n\r\v\f"));
  EXPECT_TRUE(full("\\x41\\u0042\\u{43}", "ABC"));
  EXPECT_TRUE(full("a\\0b", std::string_view("a\0b", 3)));
  EXPECT_TRUE(full("\\.\\/\\-\\[\\]\\{\\}\\(\\)\\*\\+\\?\\^\\$\\|\\\\", "./-[]{}()*+?^$|\\"));
  EXPECT_TRUE(full("\\q\\e", "qe"));  // identity escapes, as browsers read them
  EXPECT_TRUE(full("\\cJ", "\n"));
  EXPECT_TRUE(full("[\\b]", "\b"));
  EXPECT_TRUE(full("a{", "a{"));
  EXPECT_TRUE(full("a{,2}", "a{,2}"));
  EXPECT_TRUE(full("a{x}", "a{x}"));
  EXPECT_TRUE(full("}", "}"));
}

TEST(grammar_regex, quantifiers) {
  EXPECT_TRUE(full("a{2,3}", "aa"));
  EXPECT_TRUE(full("a{2,3}", "aaa"));
  EXPECT_FALSE(full("a{2,3}", "a"));
  EXPECT_FALSE(full("a{2,3}", "aaaa"));
  EXPECT_TRUE(full("a{0,}", ""));
  EXPECT_TRUE(full("a{0,}", "aaaaaa"));
  EXPECT_TRUE(full("a{2,}", "aaaaaa"));
  EXPECT_FALSE(full("a{2,}", "a"));
  EXPECT_TRUE(full("a{3}", "aaa"));
  EXPECT_FALSE(full("a{3}", "aaaa"));
  EXPECT_TRUE(full("a{0}b", "b"));
  EXPECT_TRUE(full("ab*c", "ac"));
  EXPECT_TRUE(full("ab+c", "abbc"));
  EXPECT_FALSE(full("ab+c", "ac"));
  EXPECT_TRUE(full("ab?c", "ac"));
  EXPECT_FALSE(full("ab?c", "abbc"));
  EXPECT_TRUE(full("a*?b+?c??d{1,2}?", "bbdd"));
  EXPECT_TRUE(full("(a*)*b", "aaab"));
  EXPECT_TRUE(full("(a|)+b", "b"));
  EXPECT_TRUE(full(".{0,1000}", std::string(1000, 'x')));
  EXPECT_FALSE(full(".{0,1000}", std::string(1001, 'x')));
}

TEST(grammar_regex, groups_and_alternation) {
  EXPECT_TRUE(full("(ab|cd)+", "abcdab"));
  EXPECT_FALSE(full("(ab|cd)+", "abc"));
  EXPECT_TRUE(full("((a|b)(c|d)){2}", "adbc"));
  EXPECT_TRUE(full("(?:x|y)z", "yz"));
  EXPECT_TRUE(full("(?<year>\\d{4})-(?<m>\\d\\d)", "2024-05"));
  EXPECT_TRUE(full("a||b", ""));
  EXPECT_TRUE(full("()", ""));
  EXPECT_TRUE(full("red|green|blue", "green"));
  EXPECT_FALSE(full("red|green|blue", "gree"));
}

TEST(grammar_regex, literal_kind) {
  auto set = *regex_set::compile({{"a.b*(c)", regex_kind::literal}});
  EXPECT_TRUE(matches(*set, "a.b*(c)", 1));
  EXPECT_FALSE(matches(*set, "axb*(c)", 1));
  EXPECT_FALSE(matches(*set, "a.b*(c)d", 1));
  EXPECT_FALSE(matches(*set, "a.b", 1));
}

TEST(grammar_regex, escape_round_trips) {
  const std::string text = "a.b*c+d?(e)[f]{g}|h^i$j\\k/l-m é";
  auto set = compile_one(regex_escape(text), regex_kind::full);
  ASSERT_TRUE(set);
  EXPECT_TRUE(matches(*set, text, 1));
  EXPECT_FALSE(matches(*set, text + "x", 1));
  EXPECT_FALSE(matches(*set, "a.b", 1));
}

TEST(grammar_regex, product_of_two_components) {
  // a string's `pattern` and its `format`, both at once
  auto set = *regex_set::compile(
      {{"^[a-z]+", regex_kind::search}, {"[a-z]{2}[0-9]", regex_kind::full}});
  EXPECT_EQ(set->n_components(), 2u);
  EXPECT_EQ(set->all_mask(), 3u);
  EXPECT_TRUE(matches(*set, "ab1", 3));
  EXPECT_EQ(set->accept_mask(feed(*set, "abc1")), 1u);  // pattern only
  EXPECT_FALSE(matches(*set, "1ab1", 1));
  EXPECT_EQ(set->accept_mask(feed(*set, "ab")), 1u);
  const regex_state q = feed(*set, "abc");
  EXPECT_EQ(set->alive_mask(q), 1u);  // the format needs a digit third
  EXPECT_EQ(set->distance_to_accept(feed(*set, "ab"), 3), 1);
  EXPECT_EQ(set->distance_to_accept(q, 3), -1);
  EXPECT_EQ(set->distance_to_any(q, 3), 0);
}

TEST(grammar_regex, component_count) {
  auto none = regex_set::compile({});
  ASSERT_TRUE(none.ok());
  EXPECT_EQ((*none)->all_mask(), 0u);
  EXPECT_EQ((*none)->next(0, 'a'), k_dead);
  std::vector<regex_component> many(64, regex_component{"a", regex_kind::literal});
  auto full64 = regex_set::compile(many);
  ASSERT_TRUE(full64.ok());
  EXPECT_EQ((*full64)->accept_mask((*full64)->next(0, 'a')), ~uint64_t{0});
  many.push_back({"b", regex_kind::literal});
  EXPECT_FALSE(regex_set::compile(many).ok());
}

TEST(grammar_regex, keys_against_properties) {
  auto set = *regex_set::compile({{"name", regex_kind::literal},
                                  {"nick", regex_kind::literal},
                                  {"^x-", regex_kind::search}});
  EXPECT_EQ(set->alive_mask(feed(*set, "n")), 3u);
  EXPECT_EQ(set->alive_mask(feed(*set, "ni")), 2u);
  EXPECT_EQ(set->accept_mask(feed(*set, "nick")), 2u);
  EXPECT_EQ(set->accept_mask(feed(*set, "x-nick")), 4u);
  EXPECT_EQ(feed(*set, "q"), k_dead);
  EXPECT_EQ(set->distance_to_any(feed(*set, "n"), 3), 3);
  EXPECT_EQ(set->distance_to_any(0, 7), 2);
}

TEST(grammar_regex, alive_mask_prunes) {
  auto set = compile_one("^abc$", regex_kind::full);
  ASSERT_TRUE(set);
  EXPECT_EQ(set->alive_mask(feed(*set, "ab")), 1u);
  EXPECT_EQ(feed(*set, "abd"), k_dead);
  EXPECT_EQ(feed(*set, "abcd"), k_dead);
  auto s2 = compile_one("^abc$", regex_kind::search);
  EXPECT_EQ(feed(*s2, "abd"), k_dead);
  EXPECT_EQ(feed(*s2, "x"), k_dead);
  auto s3 = compile_one("abc$", regex_kind::search);
  EXPECT_NE(feed(*s3, "abcd"), k_dead);  // another "abc" may still end the string
  EXPECT_EQ(s3->accept_mask(feed(*s3, "abcd")), 0u);
}

TEST(grammar_regex, distance_to_accept) {
  auto a3 = compile_one("^a{3}$", regex_kind::search);
  EXPECT_EQ(a3->distance_to_accept(feed(*a3, "a"), 1), 2);
  EXPECT_EQ(a3->distance_to_accept(feed(*a3, "aaa"), 1), 0);
  EXPECT_EQ(a3->distance_to_accept(feed(*a3, "a"), 0), 0);
  auto ym = compile_one("^[0-9]{4}-[0-9]{2}$", regex_kind::search);
  EXPECT_EQ(ym->distance_to_accept(ym->start(), 1), 7);
  EXPECT_EQ(ym->distance_to_accept(ym->start(), 1), 7);  // memoized
  EXPECT_EQ(ym->distance_to_accept(k_dead, 1), -1);
  auto never = compile_one("a^b", regex_kind::search);
  EXPECT_EQ(never->distance_to_accept(never->start(), 1), -1);
  EXPECT_EQ(never->alive_mask(never->start()), 0u);
}

TEST(grammar_regex, unsupported_constructs_are_named) {
  EXPECT_EQ(compile_error("a(?=b)"),
            "regex \"a(?=b)\": lookahead (?= at offset 1 is not supported");
  EXPECT_NE(compile_error("a(?!b)").find("lookahead (?!"), std::string::npos);
  EXPECT_NE(compile_error("(?<=a)b").find("lookbehind (?<= at offset 0"), std::string::npos);
  EXPECT_NE(compile_error("(?<!a)b").find("lookbehind (?<!"), std::string::npos);
  EXPECT_NE(compile_error("\\bword").find("word boundary \\b at offset 0"), std::string::npos);
  EXPECT_NE(compile_error("a\\B").find("word boundary \\B at offset 1"), std::string::npos);
  EXPECT_NE(compile_error("(a)\\1").find("backreference \\1 at offset 3"), std::string::npos);
  EXPECT_NE(compile_error("(?<x>a)\\k<x>").find("named backreference"), std::string::npos);
  EXPECT_NE(compile_error("\\p{L}").find("Unicode property escape \\p{"), std::string::npos);
  EXPECT_NE(compile_error("\\P{L}").find("Unicode property escape \\P{"), std::string::npos);
  EXPECT_NE(compile_error("(?i)a").find("(? at offset 0"), std::string::npos);
  EXPECT_NE(compile_error("(a").find("unterminated group"), std::string::npos);
  EXPECT_NE(compile_error("a)").find("unmatched ) at offset 1"), std::string::npos);
  EXPECT_NE(compile_error("[a").find("unterminated character class"), std::string::npos);
  EXPECT_NE(compile_error("[z-a]").find("range out of order"), std::string::npos);
  EXPECT_NE(compile_error("a**").find("nothing to repeat"), std::string::npos);
  EXPECT_NE(compile_error("*a").find("nothing to repeat before * at offset 0"), std::string::npos);
  EXPECT_NE(compile_error("^*").find("nothing to repeat"), std::string::npos);
  EXPECT_NE(compile_error("a{3,2}").find("numbers out of order in {3,2}"), std::string::npos);
  EXPECT_NE(compile_error("a\\").find("at end of pattern"), std::string::npos);
  EXPECT_NE(compile_error("\xC3").find("invalid UTF-8"), std::string::npos);
  EXPECT_NE(compile_error(std::string(2000, '(')).find("nested deeper"), std::string::npos);
}

TEST(grammar_regex, huge_count_is_an_error) {
  const std::string msg = compile_error("a{1,100000}");
  EXPECT_NE(msg.find("{1,100000} at offset 1"), std::string::npos) << msg;
  EXPECT_NE(compile_error("(a{1000}){1000}").find("{1000} at offset 9"), std::string::npos);
  EXPECT_NE(compile_error("a{99999999999999999999}").find("quantifier"), std::string::npos);
  EXPECT_EQ(compile_error("[a-z]{0,1000}"), "(compiled)");
}

TEST(grammar_regex, many_dfa_states_stay_under_the_cap) {
  // the 13th byte from the end is an 'a': 2^13 DFA states, all reachable
  auto set = compile_one("(a|b)*a(a|b){12}", regex_kind::full);
  ASSERT_TRUE(set);
  uint32_t x = 12345;
  std::string s;
  for (int i = 0; i < 20000; ++i) {
    x = x * 1103515245u + 12345u;
    s.push_back((x >> 16) & 1 ? 'a' : 'b');
  }
  const regex_state q = feed(*set, s);
  EXPECT_NE(q, k_dead);
  EXPECT_FALSE(set->overflowed());
  EXPECT_EQ(set->accept_mask(q) != 0, s[s.size() - 13] == 'a');
  EXPECT_LE(set->n_states(), 8200u);
}

TEST(grammar_regex, overflow_is_reported_not_a_crash) {
  auto set = compile_one("(a|b)*a(a|b){16}", regex_kind::full);
  ASSERT_TRUE(set);
  uint32_t x = 1;
  regex_state q = set->start();
  for (int i = 0; i < 200000 && q != k_dead; ++i) {
    x = x * 1103515245u + 12345u;
    q = set->next(q, (x >> 16) & 1 ? 'a' : 'b');
  }
  EXPECT_EQ(q, k_dead);
  EXPECT_TRUE(set->overflowed());
  EXPECT_LE(set->n_states(), 20000u);
}

const char* k_date_time =
    "^\\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\\d|3[01])T([01]\\d|2[0-3]):[0-5]\\d:([0-5]\\d|60)"
    "(\\.\\d+)?(Z|[+-]([01]\\d|2[0-3]):[0-5]\\d)$";
const char* k_email = "^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9-]+(\\.[a-zA-Z0-9-]+)*\\.[a-zA-Z]{2,}$";

TEST(grammar_regex, date_time) {
  auto set = compile_one(k_date_time, regex_kind::search);
  ASSERT_TRUE(set);
  EXPECT_TRUE(matches(*set, "2024-02-29T23:59:60Z", 1));
  EXPECT_TRUE(matches(*set, "1999-12-31T00:00:00.123+05:30", 1));
  EXPECT_FALSE(matches(*set, "1999-13-31T00:00:00Z", 1));
  EXPECT_FALSE(matches(*set, "1999-12-31 00:00:00Z", 1));
  EXPECT_FALSE(matches(*set, "1999-12-31T00:00:00", 1));
  EXPECT_EQ(set->distance_to_accept(set->start(), 1), 20);
  EXPECT_EQ(set->distance_to_accept(feed(*set, "1999-12-31T00:00:00"), 1), 1);
}

TEST(grammar_regex, email) {
  auto set = compile_one(k_email, regex_kind::search);
  ASSERT_TRUE(set);
  EXPECT_TRUE(matches(*set, "john.doe+x@mail.example.com", 1));
  EXPECT_FALSE(matches(*set, "john@localhost", 1));
  EXPECT_FALSE(matches(*set, "john@@example.com", 1));
  EXPECT_FALSE(matches(*set, "jo hn@example.com", 1));
  EXPECT_EQ(feed(*set, "jo hn"), k_dead);
}

TEST(grammar_regex, compile_and_next_are_fast) {
  const auto t0 = std::chrono::steady_clock::now();
  constexpr int n_compiles = 100;
  for (int i = 0; i < n_compiles; ++i) {
    for (const char* p : {"^[a-zA-Z0-9_-]{1,64}$", k_date_time, k_email}) {
      ASSERT_TRUE(regex_set::compile({{p, regex_kind::search}}).ok());
    }
  }
  const double compile_us = std::chrono::duration<double, std::micro>(
                                std::chrono::steady_clock::now() - t0).count() / (3 * n_compiles);
  auto set = compile_one(k_email, regex_kind::search);
  const std::string s = "john.doe+x@mail.example.com";
  feed(*set, s);  // the transitions, computed once
  constexpr int n_runs = 100000;
  const auto t1 = std::chrono::steady_clock::now();
  uint64_t sink = 0;
  for (int i = 0; i < n_runs; ++i) {
    sink += static_cast<uint64_t>(feed(*set, s));
  }
  const double next_ns = std::chrono::duration<double, std::nano>(
                             std::chrono::steady_clock::now() - t1).count() / (n_runs * s.size());
  std::printf("compile %.1f us a pattern, next %.2f ns a byte (%llu)\n", compile_us, next_ns,
              static_cast<unsigned long long>(sink % 2));
  EXPECT_LT(compile_us, 5000.0);  // a loose bound: sanitizer and debug builds run here too
}

}  // namespace
}  // namespace baton::grammar
