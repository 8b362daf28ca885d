// The front end of openai_server.hpp: the routes (/health, /metrics, /v1/models,
// /v1/completions, /v1/chat/completions, /tokenize, /detokenize), a completion's life
// from parsed request to the last SSE chunk or JSON reply (request_state, drain; its n
// choices each a choice_state, streamed interleaved under their index and answered
// together; a reply that is a tool call answered as `tool_calls`, and held back while
// streamed), and refusals through the status table. Parsing and reply shapes are
// openai_api's, tool_calls' and tokenize_api's; the /metrics text is front_metrics'.
#include "launch/serve/openai_server.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "actors/admission.hpp"
#include "launch/serve/api_keys.hpp"
#include "launch/serve/front_metrics.hpp"
#include "launch/serve/sse_keepalive.hpp"
#include "launch/serve/openai_api.hpp"
#include "launch/serve/tokenize_api.hpp"
#include "launch/serve/tool_calls.hpp"
#include "runtime/grammar/json_schema.hpp"
#include "runtime/system/error.hpp"
#include "runtime/text/chat_prompt.hpp"

namespace baton::api {

namespace {

using nlohmann::json;
using clock_type = std::chrono::steady_clock;

/// Every JSON text the server writes: invalid UTF-8 (a model name, a path, text from a
/// random-weight model) is replaced, never thrown on.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

struct request_state;

}  // namespace

struct front_end::impl {
  front_end_options o;
  api_keys keys;
  std::shared_ptr<const tokenizer> tok;
  serving_backend& backend;
  front_metrics metrics;
  std::function<http::server_counters()> http_counters;
  std::atomic<uint64_t> next_id{1};
  std::atomic<uint64_t> next_request_number{1};  ///< every HTTP request, for the error log
  std::atomic<bool> stopping{false};   ///< a signal came: new requests get 503
  mutable std::mutex active_mu;
  std::set<uint64_t> active;           ///< requests not finished yet
  boost::asio::thread_pool workers;
  sse_keepalive keepalive;  ///< comments to streams silent for 2 s
  impl(front_end_options opts, api_keys k, std::shared_ptr<const tokenizer> t,
       serving_backend& b)
      : o(std::move(opts)),
        keys(std::move(k)),
        tok(std::move(t)),
        backend(b),
        workers(static_cast<size_t>(std::max(1, o.n_workers))) {}

  /// Answers with `why`'s row of the status table and counts it.
  void reject(http::response& res, reject_reason why, std::string message,
              std::string param = "", http::header_list headers = {}) {
    reject(res, error_for(why, std::move(message), std::move(param)), std::move(headers));
  }
  void reject(http::response& res, const api_error& e, http::header_list headers = {}) {
    {
      std::lock_guard<std::mutex> ml(metrics.mu);
      metrics.rejected[e.reason] += 1;
    }
    res.send(e.status, "application/json", dump(error_json(e)), std::move(headers));
  }
  /// Runs `work` on the worker pool behind the same catch-all as the io thread's.
  template <class F>
  void off_io(const http::request& rq, const std::shared_ptr<http::response>& res,
              uint64_t number, F work) {
    boost::asio::post(workers, [this, rq, res, number, work = std::move(work)]() {
      try {
        work();
      } catch (const std::exception& e) {
        internal_error(rq, *res, number, e.what());
      } catch (...) {
        internal_error(rq, *res, number, "unknown exception");
      }
    });
  }
  /// POST /admin/topology: a live reshard (the admin key, or a loopback client).
  void admin_topology(const http::request& rq, const std::shared_ptr<http::response>& res,
                      uint64_t number);
  void route(const http::request& rq, const std::shared_ptr<http::response>& res,
             uint64_t number);
  /// The 500 for an exception that escaped a handler, and its log line.
  void internal_error(const http::request& rq, http::response& res, uint64_t number,
                      const char* what);
  void completion(const http::request& rq, const std::shared_ptr<http::response>& res,
                  bool chat, const std::string& key);
  /// POST /tokenize or /detokenize (tokenize_api), on a worker: a 4 MiB prompt takes a while.
  void tokenize(const http::request& rq, http::response& res, bool detokenize);
};

namespace {

void send_json(http::response& res, int status, const json& j, http::header_list headers = {}) {
  res.send(status, "application/json", dump(j), std::move(headers));
}

/// The 405 of a POST route asked with another method.
void post_only(const http::request& rq, http::response& res) {
  const api_error e = error_for(reject_reason::method_not_allowed, "use POST on " + rq.target);
  res.send(e.status, "application/json", dump(error_json(e)), {{"Allow", "POST"}});
}

/// One choice of a request (a request asks for n of them): its text, its tokens with
/// their logprobs, and how far its stream has gone. The router decodes each choice on
/// its own, so a choice's text is the concatenation of its events' texts.
struct choice_state {
  int32_t index = 0;  ///< OpenAI's choices[].index
  std::string text;
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::vector<std::vector<std::pair<int32_t, float>>> tops;  // per token: the alternatives
  clock_type::time_point t_last;  ///< its last token, for the inter-token latency
  size_t n_streamed = 0;  ///< tokens whose text (and logprobs) went out in a chunk
  /// A streamed chat with tools offered holds its text back while it is white space, and
  /// to the end once it starts with '{': a call goes out whole, its arguments parsed.
  bool holding = false;
  std::string held;
  finish_reason finish = finish_reason::none;  ///< none until its final event
};

/// One admitted request's life: its events in, its answer out.
struct request_state {
  front_end::impl* fe = nullptr;
  completion_request req;
  uint64_t id = 0;  ///< the request's id; its choices run as sequences id .. id + n - 1
  std::string object_id;
  std::shared_ptr<event_stream> stream;
  std::shared_ptr<http::response> res;
  clock_type::time_point t0 = clock_type::now();
  bool first = true;  ///< no choice has a token yet
  bool finished = false;
  /// A `Warning` header for schema keywords left out (strict: false), else empty.
  http::header_list warnings;
  std::vector<choice_state> choices;  ///< [req.n], by index
  int32_t n_ended = 0;                ///< choices whose final event came
  // usage, from the final events: the prompt is counted once (the choices share it)
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;      ///< summed over the choices
  int32_t cached_tokens = 0;          ///< choice 0's: forked choices report their parent's
  std::mutex mu;  // drains come from CAF threads
};

std::string piece_text(const request_state& st, int32_t id) {
  auto piece = st.fe->tok->token_piece(id, true);
  return piece ? std::string(*piece) : std::string();
}

std::vector<int> piece_bytes(const std::string& t) {
  std::vector<int> bytes;
  for (char c : t) {
    bytes.push_back(static_cast<unsigned char>(c));
  }
  return bytes;
}

/// The logprobs of tokens [from, to) of choice `c`, in the endpoint's shape.
json logprobs_json(const request_state& st, const choice_state& c, size_t from, size_t to) {
  if (!st.req.logprobs) {
    return nullptr;
  }
  json content = json::array();
  json tokens = json::array();
  json values = json::array();
  json tops = json::array();
  for (size_t i = from; i < to; ++i) {
    const std::string t = piece_text(st, c.tokens[i]);
    json alts = json::array();
    json alt_map = json::object();
    for (const auto& [id, lp] : c.tops[i]) {
      const std::string a = piece_text(st, id);
      alts.push_back({{"token", a}, {"logprob", lp}, {"bytes", piece_bytes(a)}});
      alt_map[a] = lp;
    }
    content.push_back({{"token", t}, {"logprob", c.logprobs[i]}, {"bytes", piece_bytes(t)},
                       {"top_logprobs", alts}});
    tokens.push_back(t);
    values.push_back(c.logprobs[i]);
    tops.push_back(alt_map);
  }
  if (st.req.chat) {
    return {{"content", content}};
  }
  return {{"tokens", tokens},
          {"token_logprobs", values},
          {"top_logprobs", st.req.sampling.top_logprobs > 0 ? tops : json(nullptr)}};
}

/// A stream chunk around its one choice.
json chunk_of(const request_state& st, json choice) {
  return {{"id", st.object_id},
          {"object", st.req.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", st.fe->o.created},
          {"model", st.fe->o.model_name},
          {"choices", json::array({std::move(choice)})}};
}

/// A chunk of choice `index`: text (a chat's content delta, with the role on its first),
/// or its finish.
json chunk_json(const request_state& st, int32_t index, const std::string& text,
                const json& finish, const json& logprobs, bool role) {
  json choice = {{"index", index}, {"logprobs", logprobs}, {"finish_reason", finish}};
  if (st.req.chat) {
    json delta = json::object();
    if (role) {
      delta["role"] = "assistant";
    }
    if (role || !text.empty()) {
      delta["content"] = text;
    }
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  return chunk_of(st, std::move(choice));
}

/// A chat chunk of choice `index` whose delta is one entry of `tool_calls` (that entry's
/// own index is 0: a reply holds at most one call).
json tool_call_chunk(const request_state& st, int32_t index, json call, const json& logprobs) {
  call["index"] = 0;
  json delta = {{"tool_calls", json::array({std::move(call)})}};
  return chunk_of(st, {{"index", index}, {"delta", std::move(delta)}, {"logprobs", logprobs},
                       {"finish_reason", nullptr}});
}

void send_chunk(request_state& st, const json& chunk) {
  st.res->chunk("data: " + dump(chunk) + "\n\n");
  st.fe->keepalive.sent(st.id);
}

/// Streams `text` of choice `c`, with the logprobs of its tokens not sent yet, unless it
/// is held back.
void stream_text(request_state& st, choice_state& c, const std::string& text) {
  std::string out = text;
  if (c.holding) {
    c.held += text;
    const size_t at = c.held.find_first_not_of(" \t\r\n");
    if (at == std::string::npos || c.held[at] == '{') {
      return;  // not known yet, or maybe a call
    }
    c.holding = false;
    out = std::exchange(c.held, std::string());
  }
  const bool new_logprobs = st.req.logprobs && c.n_streamed < c.tokens.size();
  if (out.empty() && !new_logprobs) {
    return;
  }
  send_chunk(st, chunk_json(st, c.index, out, nullptr,
                            logprobs_json(st, c, c.n_streamed, c.tokens.size()), false));
  c.n_streamed = c.tokens.size();
}

/// Choice `c` as a tool call, when tools were offered and it is one.
std::optional<tool_call> reply_call(const request_state& st, const choice_state& c) {
  return tools_offered(st.req) ? parse_tool_call(c.text, st.req.tools) : std::nullopt;
}

/// The end of a choice's streamed text: what was held back goes out, as a call (OpenAI's
/// two deltas: the id and name with empty arguments, then the arguments) or as content.
/// Returns the finish reason to send.
std::string end_stream_text(request_state& st, choice_state& c) {
  if (!c.holding) {
    return to_string(c.finish);
  }
  c.holding = false;
  const json logprobs = logprobs_json(st, c, c.n_streamed, c.tokens.size());
  c.n_streamed = c.tokens.size();
  if (auto call = reply_call(st, c)) {
    send_chunk(st, tool_call_chunk(st, c.index,
                                   tool_call_json({call->name, ""}, new_tool_call_id()), nullptr));
    send_chunk(st, tool_call_chunk(st, c.index, {{"function", {{"arguments", call->arguments}}}},
                                   logprobs));
    return "tool_calls";
  }
  if (!c.held.empty() || !logprobs.is_null()) {
    send_chunk(st, chunk_json(st, c.index, c.held, nullptr, logprobs, false));
  }
  return to_string(c.finish);
}

/// Choice `c` of a whole reply: a chat's message (a tool call, or the text as content) or
/// a completion's text, its logprobs and finish reason.
json reply_choice(const request_state& st, const choice_state& c) {
  std::string finish = to_string(c.finish);
  json choice = {{"index", c.index}, {"logprobs", logprobs_json(st, c, 0, c.tokens.size())}};
  if (!st.req.chat) {
    choice["text"] = c.text;
  } else if (auto call = reply_call(st, c)) {
    finish = "tool_calls";
    choice["message"] = {{"role", "assistant"},
                         {"content", nullptr},
                         {"tool_calls", json::array({tool_call_json(*call, new_tool_call_id())})}};
  } else {
    choice["message"] = {{"role", "assistant"}, {"content", c.text}};
  }
  choice["finish_reason"] = finish;
  return choice;
}

/// The final event's error as the client sees it: its kind's row of the status table
/// (unavailable for a pipeline that is down or stopping, stage_failed otherwise).
api_error event_error(const gen_event& e, bool stopping) {
  return error_for(stopping ? reject_reason::unavailable : reason_of(e.error_kind), e.error);
}

/// The request is over (answered, or its client gone): no more events, keep-alives or
/// place among the active ones.
void end_request(request_state& st, clock_type::time_point now) {
  front_end::impl& fe = *st.fe;
  st.finished = true;
  st.stream->on_push(nullptr);  // the callback holds st: let both go
  {
    std::lock_guard<std::mutex> al(fe.active_mu);
    fe.active.erase(st.id);
  }
  fe.keepalive.remove(st.id);  // no keep-alive after the end
  std::lock_guard<std::mutex> ml(fe.metrics.mu);
  fe.metrics.e2e.observe(std::chrono::duration<double>(now - st.t0).count());
}

/// Takes whatever events wait and answers with them (a stream's chunks, or the whole
/// response once every choice has ended). The events of the n choices come interleaved,
/// each choice ending with its own final event; a choice that ends in an error ends the
/// request with it, and a cancelled one means the client went (or the server stops).
void drain(const std::shared_ptr<request_state>& st) {
  std::lock_guard<std::mutex> lock(st->mu);
  front_end::impl& fe = *st->fe;
  while (!st->finished) {
    auto e = st->stream->try_next();
    if (!e) {
      return;
    }
    // the router's contract: every event names one of the request's choices
    BATON_ASSERT(e->index >= 0 && static_cast<size_t>(e->index) < st->choices.size());
    choice_state& c = st->choices[static_cast<size_t>(e->index)];
    const auto now = clock_type::now();
    if (e->token >= 0) {
      {
        std::lock_guard<std::mutex> ml(fe.metrics.mu);
        if (st->first) {
          fe.metrics.ttft.observe(std::chrono::duration<double>(now - st->t0).count());
        } else if (!c.tokens.empty()) {
          fe.metrics.itl.observe(std::chrono::duration<double>(now - c.t_last).count());
        }
      }
      st->first = false;
      c.t_last = now;
      c.tokens.push_back(e->token);
      c.logprobs.push_back(e->logprob);
      std::vector<std::pair<int32_t, float>> alt;
      for (size_t k = 0; k < e->top_ids.size() && k < e->top_logprobs.size(); ++k) {
        alt.emplace_back(e->top_ids[k], e->top_logprobs[k]);
      }
      c.tops.push_back(std::move(alt));
    }
    c.text += e->text;
    if (st->req.stream) {
      stream_text(*st, c, e->text);
    }
    if (e->finish == finish_reason::none) {
      continue;
    }
    {
      std::lock_guard<std::mutex> ml(fe.metrics.mu);
      fe.metrics.finished[to_string(e->finish)] += 1;
    }
    if (e->finish == finish_reason::cancelled && !fe.stopping) {
      end_request(*st, now);
      if (st->req.stream) {
        st->res->end();
      }
      return;  // the client is gone (a cancel ends every choice)
    }
    if (e->finish == finish_reason::cancelled) {  // the server stops: say so, as a final event
      e->finish = finish_reason::error;
      e->error = "the server is shutting down";
      e->error_kind = refusal::shutting_down;
    }
    if (e->finish == finish_reason::error) {
      end_request(*st, now);
      if (st->n_ended + 1 < st->req.n) {
        fe.backend.cancel(st->id);  // the other choices' answer is not wanted any more
      }
      const api_error err = event_error(*e, fe.stopping);
      if (st->req.stream) {
        st->res->chunk("data: " + dump(error_json(err)) + "\n\n");
        st->res->chunk("data: [DONE]\n\n");
        st->res->end();
      } else {
        st->res->send(err.status, "application/json", dump(error_json(err)));
      }
      return;
    }
    c.finish = e->finish;
    st->n_ended += 1;
    st->completion_tokens += e->completion_tokens;
    if (c.index == 0) {
      st->prompt_tokens = e->prompt_tokens;
      st->cached_tokens = e->cached_tokens;
    }
    if (st->req.stream) {
      const std::string finish = end_stream_text(*st, c);
      send_chunk(*st, chunk_json(*st, c.index, "", finish, nullptr, false));
    }
    if (st->n_ended < st->req.n) {
      continue;
    }
    end_request(*st, now);
    const json usage = usage_json(st->prompt_tokens, st->completion_tokens, st->cached_tokens);
    if (st->req.stream) {
      if (st->req.include_usage) {
        json u = chunk_of(*st, nullptr);
        u["choices"] = json::array();
        u["usage"] = usage;
        st->res->chunk("data: " + dump(u) + "\n\n");
      }
      st->res->chunk("data: [DONE]\n\n");
      st->res->end();
      return;
    }
    json choices = json::array();
    for (const choice_state& each : st->choices) {
      choices.push_back(reply_choice(*st, each));
    }
    send_json(*st->res, 200,
              {{"id", st->object_id},
               {"object", st->req.chat ? "chat.completion" : "text_completion"},
               {"created", fe.o.created},
               {"model", fe.o.model_name},
               {"choices", std::move(choices)},
               {"usage", usage}},
              st->warnings);
  }
}

}  // namespace

// -- the routes -------------------------------------------------------------------------

void front_end::impl::completion(const http::request& rq,
                                 const std::shared_ptr<http::response>& res, bool chat,
                                 const std::string& key) {
  json body = json::parse(rq.body, nullptr, false);
  if (body.is_discarded()) {
    return reject(*res, reject_reason::invalid_request,
                  "the request body is not valid JSON (or not valid UTF-8)");
  }
  auto parsed = parse_request(body, chat);
  if (auto* e = std::get_if<api_error>(&parsed)) {
    return reject(*res, *e);
  }
  auto st = std::make_shared<request_state>();
  st->fe = this;
  st->req = std::move(std::get<completion_request>(parsed));
  auto& r = st->req;
  if (!r.model.empty() && r.model != o.model_name) {
    return reject(*res, reject_reason::model_not_found,
                  "The model '" + r.model + "' does not exist (this server serves '" +
                      o.model_name + "')",
                  "model");
  }
  std::vector<int32_t> prompt;
  if (chat) {
    auto t = encode_chat(*tok, r.messages, true, o.allow_special_tokens_in_chat);
    if (!t) {
      return reject(*res, reject_reason::invalid_request, t.err().message, "messages");
    }
    prompt = std::move(*t);
  } else if (!r.prompt_tokens.empty()) {
    for (size_t i = 0; i < r.prompt_tokens.size(); ++i) {
      const auto t = r.prompt_tokens[i];
      if (t < 0 || t >= o.n_vocab) {
        return reject(*res, reject_reason::invalid_request,
                      "prompt[" + std::to_string(i) + "]: token id " + std::to_string(t) +
                          " is outside the vocabulary (0.." + std::to_string(o.n_vocab - 1) + ")",
                      "prompt");
      }
      prompt.push_back(static_cast<int32_t>(t));
    }
  } else {
    prompt = tok->encode(r.prompt, true, true);
  }
  const auto n_prompt = static_cast<int64_t>(prompt.size());
  if (r.max_tokens < 0) {
    r.max_tokens = static_cast<int32_t>(std::max<int64_t>(1, o.n_ctx - n_prompt));
  }
  if (n_prompt + r.max_tokens > o.n_ctx) {
    return reject(*res, reject_reason::context_length,
                  "This model's maximum context length is " + std::to_string(o.n_ctx) +
                      " tokens. However, you requested " +
                      std::to_string(n_prompt + r.max_tokens) + " tokens (" +
                      std::to_string(n_prompt) + " in the " + (chat ? "messages" : "prompt") +
                      ", " + std::to_string(r.max_tokens) +
                      " in the completion). Please reduce the length of the " +
                      (chat ? "messages" : "prompt") + " or completion.",
                  chat ? "messages" : "prompt");
  }
  if (!r.json_schema.empty()) {
    // compiled here too, to refuse what the grammar cannot do before anything runs (the
    // last stage compiles it again: it may be another process)
    grammar::schema_options so;
    so.strict = r.schema_strict;
    grammar::schema_error why;
    auto g = grammar::compile_json_schema(r.json_schema, so, &why);
    if (!g) {
      return reject(*res, reject_reason::invalid_request,
                    "the JSON Schema cannot be used: " + why.message,
                    r.tool_choice == tool_choice_mode::required ||
                            r.tool_choice == tool_choice_mode::named
                        ? "tools"
                        : "response_format");
    }
    const int64_t shortest = (*g)->min_value_bytes((*g)->root);
    if (shortest > r.max_tokens) {
      return reject(*res, reject_reason::invalid_request,
                    "max_tokens (" + std::to_string(r.max_tokens) +
                        ") is too small for any JSON document the schema allows: the shortest "
                        "takes " + std::to_string(shortest) + " tokens",
                    "max_tokens");
    }
    std::string w;
    for (const auto& x : (*g)->warnings) {
      w += (w.empty() ? "" : "; ") + x;
    }
    if (!w.empty()) {
      // RFC 7234's miscellaneous persistent warning; quotes and line breaks cannot appear
      for (char& c : w) {
        c = c == '"' || c == '\r' || c == '\n' ? '\'' : c;
      }
      st->warnings.emplace_back("Warning", "299 baton \"" + valid_utf8(w.substr(0, 2000)) + "\"");
    }
  }
  for (const auto& [id, bias] : r.logit_bias) {
    if (id < 0 || id >= o.n_vocab) {
      return reject(*res, reject_reason::invalid_request,
                    "logit_bias: token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                        std::to_string(o.n_vocab - 1) + ")",
                    "logit_bias");
    }
  }
  if (o.max_num_seqs > 0) {
    // admission refuses it too; said here, the error names the field
    if (auto why = choices_error(r.n, o.max_num_seqs); !why.empty()) {
      return reject(*res, reject_reason::invalid_request, why, "n");
    }
  }
  gen_request g;
  g.constraint.json_schema = r.json_schema;
  g.constraint.strict = r.schema_strict;
  for (const auto& [id, bias] : r.logit_bias) {
    g.constraint.bias_ids.push_back(id);
    g.constraint.bias_values.push_back(bias);
  }
  g.constraint.max_tokens = r.max_tokens;
  // n choices run as sequences id .. id + n - 1; the request is known by the first
  st->id = next_id.fetch_add(static_cast<uint64_t>(r.n));
  g.id = st->id;
  g.n = r.n;
  g.key = key.empty() ? r.user : key;
  g.prompt = std::move(prompt);
  g.max_tokens = r.max_tokens;
  g.sampling = r.sampling;
  g.stop = r.stop;
  g.ignore_eos = r.ignore_eos;
  st->object_id = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(st->id);
  st->res = res;
  st->choices.resize(static_cast<size_t>(r.n));
  for (size_t i = 0; i < st->choices.size(); ++i) {
    st->choices[i].index = static_cast<int32_t>(i);
    st->choices[i].holding = r.stream && tools_offered(r);
  }
  admission decision;
  st->stream = backend.submit(std::move(g), &decision);
  if (decision.verdict != admit::ok) {
    const reject_reason why = reason_of(decision.reason);
    if (why == reject_reason::queue_full || why == reject_reason::key_quota) {
      return reject(*res, why, "the server is busy: " + decision.message + "; retry later", "",
                    {{"Retry-After", std::to_string(std::max(1, decision.retry_after_s))}});
    }
    return reject(*res, why, decision.message);
  }
  {
    std::lock_guard<std::mutex> ml(metrics.mu);
    metrics.requests += 1;
  }
  if (r.stream) {
    res->start_stream(200, "text/event-stream", st->warnings);
    for (int32_t i = 0; chat && i < r.n; ++i) {  // each choice's first delta: the role
      res->chunk("data: " + dump(chunk_json(*st, i, "", nullptr, nullptr, true)) + "\n\n");
    }
  }
  {
    std::lock_guard<std::mutex> al(active_mu);
    active.insert(st->id);
  }
  if (r.stream) {
    keepalive.add(st->id, res);
  }
  serving_backend* be = &backend;
  const uint64_t id = st->id;
  res->on_close([be, id] { be->cancel(id); });  // a client that goes away frees its blocks
  st->stream->on_push([st] { drain(st); });     // drain() lets go of it at the end
}

void front_end::impl::tokenize(const http::request& rq, http::response& res, bool detokenize) {
  const json body = json::parse(rq.body, nullptr, false);
  if (body.is_discarded()) {
    return reject(res, reject_reason::invalid_request,
                  "the request body is not valid JSON (or not valid UTF-8)");
  }
  const tokenize_settings s{o.model_name, o.n_ctx, o.allow_special_tokens_in_chat};
  auto reply = detokenize ? detokenize_reply(body, *tok, s) : tokenize_reply(body, *tok, s);
  if (auto* e = std::get_if<api_error>(&reply)) {
    return reject(res, *e);
  }
  send_json(res, 200, std::get<json>(reply));
}

void front_end::impl::internal_error(const http::request& rq, http::response& res,
                                     uint64_t number, const char* what) {
  // the target may hold any bytes: log its length, not its text
  std::fprintf(stderr, "baton: internal error in request %llu (%s, a %zu-byte path, from %s): %s\n",
               static_cast<unsigned long long>(number), rq.method.c_str(), rq.target.size(),
               rq.peer.c_str(), what);
  reject(res, reject_reason::internal_error,
         "internal server error (request " + std::to_string(number) + ")");
}

namespace {

/// Whether `peer` is this host: 127.0.0.0/8, ::1, or either mapped into IPv6.
bool loopback(std::string_view peer) {
  if (peer.rfind("::ffff:", 0) == 0) {
    peer.remove_prefix(7);
  }
  return peer == "::1" || peer.rfind("127.", 0) == 0;
}

}  // namespace

void front_end::impl::admin_topology(const http::request& rq,
                                     const std::shared_ptr<http::response>& res,
                                     uint64_t number) {
  if (rq.method != "POST") {
    return post_only(rq, *res);
  }
  if (o.admin_keys.required()) {
    if (!o.admin_keys.accepts(rq.authorization, nullptr)) {
      return reject(*res, reject_reason::unauthorized,
                    rq.authorization.empty()
                        ? "Missing admin key (Authorization: Bearer <--admin-key>)"
                        : "Incorrect admin key provided");
    }
  } else if (!loopback(rq.peer)) {
    return reject(*res, reject_reason::forbidden,
                  "admin calls come from this host only unless the server has --admin-key");
  }
  // a reshard takes as long as the KV it moves: off the io thread
  off_io(rq, res, number, [this, rq, res]() {
    // {"topology": "<TOML>", "reshard_kv": "move" | "recompute"} (baton reshard), or the
    // TOML itself (curl --data-binary)
    std::string toml = rq.body;
    std::string kv;
    if (const auto at = rq.body.find_first_not_of(" \t\r\n");
        at != std::string::npos && rq.body[at] == '{') {
      const json j = json::parse(rq.body, nullptr, false);
      if (!j.is_object() || !j.contains("topology") || !j["topology"].is_string()) {
        return reject(*res, reject_reason::invalid_request,
                      "expected {\"topology\": \"<the TOML text>\"} or the TOML itself",
                      "topology");
      }
      toml = j["topology"].get<std::string>();
      if (j.contains("reshard_kv")) {
        const json& k = j["reshard_kv"];
        if (!k.is_string() || (k != "move" && k != "recompute")) {
          return reject(*res, reject_reason::invalid_request,
                        "reshard_kv: expected \"move\" or \"recompute\"", "reshard_kv");
        }
        kv = k.get<std::string>();
      }
    }
    bool busy = false;
    auto r = backend.reshard(toml, "POST /admin/topology", &busy, kv);
    if (!r) {
      return reject(*res, busy ? reject_reason::conflict : reject_reason::invalid_request,
                    r.err().message);
    }
    send_json(*res, 200,
              {{"object", "reshard"},
               {"epoch", r->epoch},
               {"prepare_seconds", r->prepare_seconds},
               {"pause_seconds", r->pause_seconds},
               {"drain_seconds", r->drain_seconds},
               {"kv_seconds", r->kv_seconds},
               {"kv_bytes_moved", r->kv_bytes_moved},
               {"kv_bytes_sent", r->kv_bytes_sent},
               {"kv_blocks", r->n_blocks},
               {"preempted", r->preempted}});
  });
}

void front_end::impl::route(const http::request& rq, const std::shared_ptr<http::response>& res,
                            uint64_t number) {
  // As in vLLM, keys guard /v1; /health and /metrics stay open. /tokenize and
  // /detokenize are guarded too (vLLM leaves them open): they spend the server's CPU.
  // The key is checked before anything else is done.
  std::string key;
  const bool guarded = rq.target == "/v1" || rq.target.rfind("/v1/", 0) == 0 ||
                       rq.target == "/tokenize" || rq.target == "/detokenize";
  if (keys.required() && guarded && !keys.accepts(rq.authorization, &key)) {
    return reject(*res, reject_reason::unauthorized,
                  rq.authorization.empty() ? "Missing API key (Authorization: Bearer ...)"
                                           : "Incorrect API key provided");
  }
  if (rq.target == "/health" && rq.method == "GET") {
    const auto s = backend.snapshot();
    const int unavailable = status_of(reject_reason::unavailable).status;
    if (!can_serve(s.stats.state)) {
      return send_json(*res, unavailable,
                       {{"status", "unavailable"}, {"error", s.stats.down_message}});
    }
    if (stopping) {
      return send_json(*res, unavailable, {{"status", "unavailable"}, {"error", "shutting down"}});
    }
    if (s.stats.state == pipeline_state::recovering) {
      // a lost stage is being replaced: requests queue and are served in a moment
      return send_json(*res, 200, {{"status", "recovering"}, {"detail", s.stats.down_message}});
    }
    return send_json(*res, 200, {{"status", "ok"}});
  }
  if (rq.target == "/metrics" && rq.method == "GET") {
    http::server_counters hc;
    if (http_counters) {
      hc = http_counters();
    }
    return res->send(200, "text/plain; version=0.0.4",
                     metrics_text(backend.snapshot(), hc, metrics));
  }
  if (rq.target == "/v1/models" && rq.method == "GET") {
    // a pipeline that cannot serve lists no model: a load balancer that probes
    // /v1/models must not send requests here (vLLM answers 200 while dead, vllm#53157)
    if (const auto s = backend.snapshot(); !can_serve(s.stats.state)) {
      return reject(*res, reject_reason::unavailable, s.stats.down_message);
    }
    return send_json(*res, 200,
                     {{"object", "list"},
                      {"data", json::array({{{"id", o.model_name},
                                             {"object", "model"},
                                             {"created", o.created},
                                             {"owned_by", "baton"},
                                             {"max_model_len", o.n_ctx}}})}});
  }
  if (rq.target == "/admin/topology") {
    return admin_topology(rq, res, number);
  }
  const bool chat = rq.target == "/v1/chat/completions";
  if (chat || rq.target == "/v1/completions") {
    if (rq.method != "POST") {
      return post_only(rq, *res);
    }
    if (stopping) {
      return reject(*res, reject_reason::unavailable, "the server is shutting down");
    }
    const auto s = backend.snapshot();
    if (!can_serve(s.stats.state)) {
      return reject(*res, reject_reason::unavailable, s.stats.down_message);
    }
    // parsing, templating and tokenising may take a while: off the io thread
    return off_io(rq, res, number,
                  [this, rq, res, chat, key]() { completion(rq, res, chat, key); });
  }
  const bool detokenize = rq.target == "/detokenize";
  if (detokenize || rq.target == "/tokenize") {
    if (rq.method != "POST") {
      return post_only(rq, *res);
    }
    return off_io(rq, res, number,
                  [this, rq, res, detokenize]() { tokenize(rq, *res, detokenize); });
  }
  const api_error e =
      error_for(reject_reason::not_found, "no route " + rq.method + " " + rq.target);
  res->send(e.status, "application/json", dump(error_json(e)));
}

// -- front_end --------------------------------------------------------------------------

front_end::front_end(front_end_options o, api_keys keys, std::shared_ptr<const tokenizer> tok,
                     serving_backend& backend)
    : impl_(std::make_unique<impl>(std::move(o), std::move(keys), std::move(tok), backend)) {}

front_end::~front_end() { impl_->workers.join(); }

void front_end::handle(http::request rq, std::shared_ptr<http::response> res) {
  const uint64_t number = impl_->next_request_number++;
  try {
    impl_->route(rq, res, number);
  } catch (const std::exception& e) {
    impl_->internal_error(rq, *res, number, e.what());
  } catch (...) {
    impl_->internal_error(rq, *res, number, "unknown exception");
  }
}

void front_end::set_http_counters(std::function<http::server_counters()> fn) {
  impl_->http_counters = std::move(fn);
}

void front_end::stop(std::chrono::milliseconds wait) {
  impl_->stopping = true;
  std::set<uint64_t> ids;
  {
    std::lock_guard<std::mutex> al(impl_->active_mu);
    ids = impl_->active;
  }
  for (uint64_t id : ids) {
    impl_->backend.cancel(id);
  }
  const auto until = clock_type::now() + wait;
  while (n_active() > 0 && clock_type::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

size_t front_end::n_active() const {
  std::lock_guard<std::mutex> al(impl_->active_mu);
  return impl_->active.size();
}

}  // namespace baton::api
