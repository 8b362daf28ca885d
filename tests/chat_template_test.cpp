// Chat template tests: Llama 3's format byte for byte (the golden chat prompt, made by
// llama.cpp), trimming, roles and the refusal of formats baton does not know.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "runtime/chat_template.hpp"
#include "runtime/gguf.hpp"
#include "runtime/vocab.hpp"
#include "tests/test_util.hpp"

namespace {

using baton::apply_chat_template;
using baton::chat_message;

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const std::vector<chat_message> k_capital = {
    {"user", "What is the capital of France? Answer in one word."}};

}  // namespace

TEST(ChatTemplate, GoldenChatPromptFromTheModelsTemplate) {
  BATON_REQUIRE_SHARED(shared);
  const std::string expected = slurp(shared / "golden" / "prompts" / "chat.txt");
  ASSERT_FALSE(expected.empty());
  auto file = baton::gguf_file::open((shared / "models" / "tiny-q8_0.gguf").string());
  ASSERT_TRUE(file.ok()) << file.err().message;
  auto vocab = baton::load_vocab(*file);
  ASSERT_TRUE(vocab.ok()) << vocab.err().message;
  ASSERT_TRUE(vocab->chat_template.has_value());
  auto text = apply_chat_template(vocab->chat_template, k_capital, true);
  ASSERT_TRUE(text.ok()) << text.err().message;
  EXPECT_EQ(*text, expected);
}

TEST(ChatTemplate, Llama3Format) {
  auto text = apply_chat_template(std::nullopt, k_capital, true);
  ASSERT_TRUE(text.ok()) << text.err().message;
  EXPECT_EQ(*text,
            "<|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France? Answer "
            "in one word.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, SystemAndUserWithoutAssistantHeader) {
  const std::string tmpl = "{% for m in messages %}<|start_header_id|>{{ m.role }}"
                           "<|end_header_id|>...{% endfor %}";
  auto text = apply_chat_template(
      tmpl, {{"system", "You are terse."}, {"user", "Hi"}, {"assistant", "Hello."}}, false);
  ASSERT_TRUE(text.ok()) << text.err().message;
  EXPECT_EQ(*text,
            "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>");
}

TEST(ChatTemplate, ContentIsTrimmed) {
  auto text = apply_chat_template("llama3", {{"user", " \t\n  two words \r\n "}}, false);
  ASSERT_TRUE(text.ok()) << text.err().message;
  EXPECT_EQ(*text, "<|start_header_id|>user<|end_header_id|>\n\ntwo words<|eot_id|>");
  // Inner white space stays; non-ASCII is not white space to trim.
  auto inner = apply_chat_template("llama3", {{"user", "a \n b\xc2\xa0"}}, false);
  ASSERT_TRUE(inner.ok());
  EXPECT_EQ(*inner, "<|start_header_id|>user<|end_header_id|>\n\na \n b\xc2\xa0<|eot_id|>");
  auto empty = apply_chat_template("llama3", {{"user", "   "}}, false);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, "<|start_header_id|>user<|end_header_id|>\n\n<|eot_id|>");
}

TEST(ChatTemplate, NoMessages) {
  auto text = apply_chat_template(std::nullopt, {}, true);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, ToolRolesAreAccepted) {
  auto text = apply_chat_template(std::nullopt, {{"ipython", "42"}, {"tool", "{}"}}, false);
  ASSERT_TRUE(text.ok()) << text.err().message;
  EXPECT_EQ(*text,
            "<|start_header_id|>ipython<|end_header_id|>\n\n42<|eot_id|>"
            "<|start_header_id|>tool<|end_header_id|>\n\n{}<|eot_id|>");
}

TEST(ChatTemplate, BadRoleIsAnError) {
  auto text = apply_chat_template(std::nullopt, {{"user", "hi"}, {"narrator", "x"}}, true);
  ASSERT_FALSE(text.ok());
  EXPECT_NE(text.err().message.find("'narrator'"), std::string::npos) << text.err().message;
  EXPECT_NE(text.err().message.find("message 1"), std::string::npos) << text.err().message;
  EXPECT_FALSE(apply_chat_template(std::nullopt, {{"User", "hi"}}, true).ok());
}

TEST(ChatTemplate, UnsupportedTemplateIsNamed) {
  const std::string chatml =
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
      "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}";
  auto text = apply_chat_template(chatml, k_capital, true);
  ASSERT_FALSE(text.ok());
  EXPECT_NE(text.err().message.find("not supported"), std::string::npos) << text.err().message;
  EXPECT_NE(text.err().message.find(chatml.substr(0, 30)), std::string::npos)
      << text.err().message;
  EXPECT_EQ(text.err().message.find(chatml.substr(60)), std::string::npos) << "quotes too much";

  auto mistral = apply_chat_template("{{ bos_token }}[INST] {{ m }} [/INST]", k_capital, true);
  EXPECT_FALSE(mistral.ok());
  EXPECT_FALSE(baton::detect_chat_format("{{ messages }}").ok());
  EXPECT_TRUE(baton::detect_chat_format(std::nullopt).ok());
  EXPECT_TRUE(baton::detect_chat_format(std::string()).ok());
}
