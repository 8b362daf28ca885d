// `baton client`: one request to an OpenAI-compatible server (`baton serve`, vLLM,
// llama-server): POST /v1/completions, or /v1/chat/completions with --chat, printing the
// text, the whole reply (--json), or the deltas as they stream (--stream). Exit status 1
// when the server or the connection fails, with the server's own message.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "launch/cli/commands.hpp"
#include "launch/http/http_client.hpp"
#include "launch/http/openai_reply.hpp"

namespace baton::cli {

namespace {

struct client_options {
  std::string url = "http://127.0.0.1:8000";
  std::string api_key;
  std::string model;
  std::string prompt;
  std::string system;
  bool chat = false;
  bool stream = false;
  bool json = false;
  int64_t max_tokens = 128;
  std::optional<double> temperature;
  std::optional<int64_t> seed;
  double timeout_s = 600;
};

/// Prints "baton: <message>" and returns exit_failure: the server or the connection
/// failed, not the command line.
int failure(const std::string& message) {
  fail(message);
  return exit_failure;
}

int run_client(const client_options& o) {
  if (o.max_tokens < 1) {
    return fail("--max-tokens must be >= 1, got " + std::to_string(o.max_tokens));
  }
  if (o.timeout_s <= 0) {
    return fail("--timeout must be > 0 seconds");
  }
  auto url = parse_http_url(o.url);
  if (!url) {
    return fail(url.err().message);
  }
  std::string text = o.prompt;
  if (text.empty()) {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    if (text.empty()) {
      return fail("no prompt: give -p TEXT or write it to stdin");
    }
  }
  http_client http(*url, o.api_key,
                   std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000)));

  std::string model = o.model;
  if (model.empty()) {
    auto models = http.get_json("/v1/models");
    if (!models) {
      return failure(models.err().message);
    }
    auto id = first_model_id(*models);
    if (!id) {
      return failure(id.err().message);
    }
    model = *id;
  }

  nlohmann::json req = {{"model", model}, {"max_tokens", o.max_tokens}};
  if (o.chat) {
    req["messages"] = nlohmann::json::array();
    if (!o.system.empty()) {
      req["messages"].push_back({{"role", "system"}, {"content", o.system}});
    }
    req["messages"].push_back({{"role", "user"}, {"content", text}});
  } else {
    req["prompt"] = text;
  }
  if (o.temperature) {
    req["temperature"] = *o.temperature;
  }
  if (o.seed) {
    req["seed"] = *o.seed;
  }
  const std::string path = o.chat ? "/v1/chat/completions" : "/v1/completions";
  const openai_route route = o.chat ? openai_route::chat : openai_route::completions;

  if (!o.stream) {
    auto reply = http.post_json(path, req);
    if (!reply) {
      return failure(reply.err().message);
    }
    if (o.json) {
      std::printf("%s\n", reply->dump(2).c_str());
    } else {
      std::printf("%s\n", read_openai_reply(*reply, route).text.c_str());
    }
    return exit_ok;
  }

  req["stream"] = true;
  req["stream_options"] = {{"include_usage", true}};
  nlohmann::json usage;
  std::string stream_error;
  auto reply = http.post_stream(path, req, [&](std::string_view data) {
    auto chunk = parse_openai_chunk(data, route);
    if (!chunk) {
      stream_error = chunk.err().message;
      return false;
    }
    if (chunk->usage.is_object()) {
      usage = chunk->usage;
    }
    if (!chunk->text.empty()) {
      std::fwrite(chunk->text.data(), 1, chunk->text.size(), stdout);
      std::fflush(stdout);
    }
    return true;
  });
  if (!reply) {
    return failure(reply.err().message);
  }
  if (!reply->ok()) {
    return failure(describe_http_error(*reply));
  }
  std::printf("\n");
  if (!stream_error.empty()) {
    return failure(stream_error);
  }
  if (!reply->saw_done) {
    return failure("the event stream ended without 'data: [DONE]'");
  }
  if (o.json) {
    std::printf("%s\n", nlohmann::json{{"usage", usage}}.dump().c_str());
  }
  return exit_ok;
}

}  // namespace

void add_client_command(CLI::App& app, int& status) {
  auto o = std::make_shared<client_options>();
  auto* cmd = app.add_subcommand(
      "client", "Send one request to an OpenAI-compatible server (baton serve) and print the reply");
  cmd->add_option("--url", o->url, "Server base URL (a trailing /v1 is optional)")
      ->capture_default_str();
  cmd->add_option("--api-key", o->api_key, "Sent as 'Authorization: Bearer KEY'")
      ->envname("BATON_API_KEY");
  cmd->add_option("--model", o->model, "Model name (default: the first of GET /v1/models)");
  cmd->add_option("-p,--prompt", o->prompt, "Prompt text (default: read stdin)");
  auto* chat = cmd->add_flag("--chat", o->chat, "POST /v1/chat/completions (default /v1/completions)");
  cmd->add_option("--system", o->system, "System message (with --chat)")->needs(chat);
  cmd->add_flag("--stream", o->stream, "Stream the reply and print it as it arrives");
  cmd->add_flag("--json", o->json,
                "Print the whole reply as JSON (with --stream: the usage, after the text)");
  cmd->add_option("-n,--max-tokens", o->max_tokens, "Most tokens to generate")
      ->capture_default_str();
  cmd->add_option("--temperature", o->temperature, "Sampling temperature (default: the server's)");
  cmd->add_option("--seed", o->seed, "Sampling seed");
  cmd->add_option("--timeout", o->timeout_s, "Seconds to wait for the server before giving up")
      ->capture_default_str();
  cmd->callback([o, &status] { status = run_client(*o); });
}

}  // namespace baton::cli
