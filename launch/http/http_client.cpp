// http_client over Beast: each request resolves (once per client), connects, writes and
// reads through a beast::tcp_stream whose async operations are run to completion on the
// client's own io_context, which is what gives the synchronous calls their timeouts.
// Event streams are read with response_parser<string_body>::read_some, so every chunk is
// handed on as it arrives, whether the body is chunked, sized or ends with the
// connection.
#include "launch/http/http_client.hpp"

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <limits>
#include <optional>

#include "launch/http/openai_reply.hpp"

namespace baton::cli {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

bool starts_with(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

/// Runs one async operation to completion on `ioc` and returns its error code.
template <class Start>
beast::error_code run_one(asio::io_context& ioc, Start&& start) {
  beast::error_code out;
  start([&out](beast::error_code ec, auto&&...) { out = ec; });
  ioc.restart();
  ioc.run();
  return out;
}

}  // namespace

std::string http_url::to_string() const {
  const bool v6 = host.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + host + "]" : host) + ":" + port + prefix;
}

result<http_url> parse_http_url(std::string_view text) {
  http_url u;
  std::string_view rest = text;
  bool scheme = false;
  if (const auto p = rest.find("://"); p != std::string_view::npos) {
    const std::string s = lower(rest.substr(0, p));
    if (s != "http") {
      return make_error("--url '%.*s': scheme '%s' is not supported (expected http://host:port)",
                        static_cast<int>(text.size()), text.data(), s.c_str());
    }
    rest.remove_prefix(p + 3);
    scheme = true;
  }
  const auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);
  std::string_view port;
  if (starts_with(authority, "[")) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) {
      return make_error("--url '%.*s': unterminated '[' in the host",
                        static_cast<int>(text.size()), text.data());
    }
    u.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (starts_with(after, ":")) {
      port = after.substr(1);
    } else if (!after.empty()) {
      return make_error("--url '%.*s': expected ':port' after ']'",
                        static_cast<int>(text.size()), text.data());
    }
  } else if (const auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    u.host = std::string(authority.substr(0, colon));
    port = authority.substr(colon + 1);
  } else {
    u.host = std::string(authority);
  }
  if (u.host.empty()) {
    return make_error("--url '%.*s': no host (expected http://host:port)",
                      static_cast<int>(text.size()), text.data());
  }
  if (port.empty()) {
    u.port = scheme ? "80" : "8000";
  } else {
    const bool digits = std::all_of(port.begin(), port.end(),
                                    [](char c) { return c >= '0' && c <= '9'; });
    if (!digits || port.size() > 5 || std::stoi(std::string(port)) > 65535) {
      return make_error("--url '%.*s': port '%.*s' is not a number in 0-65535",
                        static_cast<int>(text.size()), text.data(),
                        static_cast<int>(port.size()), port.data());
    }
    u.port = std::string(port);
  }
  std::string prefix(path.substr(0, path.find_first_of("?#")));
  while (!prefix.empty() && prefix.back() == '/') {
    prefix.pop_back();
  }
  if (prefix.size() >= 3 && prefix.compare(prefix.size() - 3, 3, "/v1") == 0) {
    prefix.resize(prefix.size() - 3);
  }
  u.prefix = prefix;
  return u;
}

std::string http_response::error_message() const {
  std::string m = openai_error_message(body);
  if (!m.empty()) {
    return m;
  }
  return std::string(http::obsolete_reason(static_cast<http::status>(status)));
}

std::string describe_http_error(const http_response& r) {
  return r.error_message() + " (HTTP " + std::to_string(r.status) + ")";
}

struct http_client::impl {
  asio::io_context ioc;
  tcp::resolver resolver{ioc};
  std::optional<tcp::resolver::results_type> endpoints;

  /// Resolves (once) and connects a fresh stream.
  result<void> connect(beast::tcp_stream& stream, const http_url& url,
                       std::chrono::milliseconds timeout) {
    if (!endpoints) {
      beast::error_code ec;
      auto r = resolver.resolve(url.host, url.port, ec);
      if (ec) {
        return make_error("cannot resolve %s: %s", url.host.c_str(), ec.message().c_str());
      }
      endpoints = std::move(r);
    }
    stream.expires_after(timeout);
    const auto ec = run_one(ioc, [&](auto h) { stream.async_connect(*endpoints, std::move(h)); });
    if (ec) {
      return make_error("cannot connect to %s: %s", url.to_string().c_str(), ec.message().c_str());
    }
    return {};
  }
};

http_client::http_client(http_url url, std::string api_key, std::chrono::milliseconds timeout)
    : url_(std::move(url)),
      api_key_(std::move(api_key)),
      timeout_(timeout),
      impl_(std::make_unique<impl>()) {}

http_client::~http_client() = default;

namespace {

struct exchange {
  http::verb verb;
  std::string target;
  const nlohmann::json* body;
  bool event_stream;
};

void close_quietly(beast::tcp_stream& stream) {
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream.socket().close(ignored);
}

/// Sends `x` and reads the reply; events of a 2xx event stream go to `on_data`.
result<http_response> perform(asio::io_context& ioc, beast::tcp_stream& stream,
                              const http_url& url, const std::string& api_key,
                              std::chrono::milliseconds timeout, const exchange& x,
                              const sse_callback* on_data) {
  const std::string what = std::string(http::to_string(x.verb)) + " " + x.target;
  auto failed = [&](const beast::error_code& ec) -> error {
    if (ec == beast::error::timeout) {
      return make_error("%s: no reply from %s within %.0f s", what.c_str(),
                        url.to_string().c_str(),
                        std::chrono::duration<double>(timeout).count());
    }
    return make_error("%s: %s", what.c_str(), ec.message().c_str());
  };

  http::request<http::string_body> req{x.verb, x.target, 11};
  req.set(http::field::host, url.host + ":" + url.port);
  req.set(http::field::user_agent, "baton/0.1.0");
  req.set(http::field::accept, x.event_stream ? "text/event-stream" : "application/json");
  if (!api_key.empty()) {
    req.set(http::field::authorization, "Bearer " + api_key);
  }
  if (x.body) {
    req.set(http::field::content_type, "application/json");
    req.body() = x.body->dump();
  }
  req.prepare_payload();
  stream.expires_after(timeout);
  if (auto ec = run_one(ioc, [&](auto h) { http::async_write(stream, req, std::move(h)); })) {
    return failed(ec);
  }

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  // no limit; not boost::none, which Beast 1.74 compares as below every Content-Length
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  stream.expires_after(timeout);
  if (auto ec = run_one(ioc, [&](auto h) {
        http::async_read_header(stream, buffer, parser, std::move(h));
      })) {
    return failed(ec);
  }
  http_response out;
  out.status = static_cast<int>(parser.get().result_int());
  out.content_type = std::string(parser.get()[http::field::content_type]);
  const bool sse = starts_with(lower(out.content_type), "text/event-stream");
  if (!on_data || !out.ok() || !sse) {
    stream.expires_after(timeout);
    if (auto ec = run_one(ioc, [&](auto h) {
          http::async_read(stream, buffer, parser, std::move(h));
        })) {
      return failed(ec);
    }
    out.body = std::move(parser.get().body());
    if (on_data && out.ok()) {
      return make_error("%s: expected a text/event-stream reply, got '%s'", what.c_str(),
                        out.content_type.c_str());
    }
    return out;
  }

  // The event stream: lines accumulate in `pending` until their '\n' arrives.
  std::string pending;
  size_t start = 0;
  auto take_line = [&](std::string_view line) -> bool {  // false: stop reading
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    if (!starts_with(line, "data:")) {
      return true;  // blank lines end events; "event:", "id:" and ": comments" are unused
    }
    line.remove_prefix(5);
    if (starts_with(line, " ")) {
      line.remove_prefix(1);
    }
    if (line == "[DONE]") {
      out.saw_done = true;
      return false;
    }
    return (*on_data)(line);
  };
  for (;;) {
    std::string& chunk = parser.get().body();
    pending.append(chunk);
    chunk.clear();
    for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
      if (!take_line(std::string_view(pending).substr(start, nl - start))) {
        close_quietly(stream);
        return out;
      }
    }
    pending.erase(0, start);
    start = 0;
    if (parser.is_done()) {
      break;
    }
    stream.expires_after(timeout);
    const auto ec = run_one(ioc, [&](auto h) {
      http::async_read_some(stream, buffer, parser, std::move(h));
    });
    if (ec && !parser.is_done()) {
      return ec == http::error::end_of_stream
                 ? make_error("%s: the server closed the event stream before [DONE]",
                              what.c_str())
                 : failed(ec);
    }
  }
  if (!pending.empty()) {  // a last line without its newline
    take_line(pending);
  }
  return out;
}

}  // namespace

result<http_response> http_client::get(std::string_view path) {
  beast::tcp_stream stream(impl_->ioc);
  if (auto c = impl_->connect(stream, url_, timeout_); !c) {
    return c.err();
  }
  auto r = perform(impl_->ioc, stream, url_, api_key_, timeout_,
                   {http::verb::get, url_.prefix + std::string(path), nullptr, false}, nullptr);
  close_quietly(stream);
  return r;
}

result<http_response> http_client::post(std::string_view path, const nlohmann::json& body) {
  beast::tcp_stream stream(impl_->ioc);
  if (auto c = impl_->connect(stream, url_, timeout_); !c) {
    return c.err();
  }
  auto r = perform(impl_->ioc, stream, url_, api_key_, timeout_,
                   {http::verb::post, url_.prefix + std::string(path), &body, false}, nullptr);
  close_quietly(stream);
  return r;
}

result<http_response> http_client::post_stream(std::string_view path, const nlohmann::json& body,
                                               const sse_callback& on_data) {
  beast::tcp_stream stream(impl_->ioc);
  if (auto c = impl_->connect(stream, url_, timeout_); !c) {
    return c.err();
  }
  auto r = perform(impl_->ioc, stream, url_, api_key_, timeout_,
                   {http::verb::post, url_.prefix + std::string(path), &body, true}, &on_data);
  close_quietly(stream);
  return r;
}

namespace {

result<nlohmann::json> as_json(result<http_response> r, std::string_view what) {
  if (!r) {
    return r.err();
  }
  if (!r->ok()) {
    return error{describe_http_error(*r)};
  }
  auto j = nlohmann::json::parse(r->body, nullptr, false);
  if (j.is_discarded()) {
    return make_error("%.*s: the reply is not JSON: %.80s", static_cast<int>(what.size()),
                      what.data(), r->body.c_str());
  }
  return j;
}

}  // namespace

result<nlohmann::json> http_client::get_json(std::string_view path) {
  return as_json(get(path), "GET " + url_.prefix + std::string(path));
}

result<nlohmann::json> http_client::post_json(std::string_view path, const nlohmann::json& body) {
  return as_json(post(path, body), "POST " + url_.prefix + std::string(path));
}

}  // namespace baton::cli
