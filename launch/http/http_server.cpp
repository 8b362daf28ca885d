// The server of http_server.hpp. One file of some 750 lines because it is one state
// machine: a connection's phases (idle, reading, responding), its timeouts and the
// eviction list the accept loop draws on are views of one shared_state, and a session
// apart from the acceptor would put that state and the phase rules in a header both
// sides edit. The session (one connection) comes first, the server (accept, back-off
// when descriptors run out, stop) last.
#include "launch/http/http_server.hpp"

#include <sys/resource.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <cstdio>
#include <deque>
#include <list>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>

namespace baton::http {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;

std::string error_body(const std::string& message, const std::string& type,
                       const std::string& code) {
  const nlohmann::json j = {
      {"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", code}}}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

uint64_t raise_descriptor_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    return 1024;
  }
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit want = rl;
    want.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &want) == 0) {
      rl = want;
    }
  }
  return rl.rlim_cur == RLIM_INFINITY ? uint64_t{1} << 20 : static_cast<uint64_t>(rl.rlim_cur);
}

namespace {

std::string reason_phrase(int status) {
  return std::string(bhttp::obsolete_reason(static_cast<bhttp::status>(status)));
}

class session;

/// What sessions share with the server: the limits, the handler, the counters and the
/// list of connections that may be evicted. Lives as long as any session or response.
struct shared_state {
  net::io_context ioc{1};
  handler h;
  server_limits limits;
  cors_policy cors;
  std::atomic<bool> alive{true};      ///< false once the server is gone: posts are dropped
  std::list<session*> evictable;      ///< idle and reading sessions, oldest first
  std::list<session*> all;            ///< every open session (closed when the server goes)
  mutable std::mutex counters_mu;
  server_counters counters;

  template <class F>
  void count(F f) {
    std::lock_guard<std::mutex> lock(counters_mu);
    f(counters);
  }
};

enum class phase { idle, reading, responding, closed };

/// One client connection: reads a request, hands it over, writes the answer.
class session : public std::enable_shared_from_this<session> {
 public:
  session(tcp::socket socket, std::shared_ptr<shared_state> st)
      : st_(std::move(st)), socket_(std::move(socket)), timer_(st_->ioc) {
    beast::error_code ec;
    const auto ep = socket_.remote_endpoint(ec);
    if (!ec) {
      peer_ = ep.address().to_string();
    }
    st_->all.push_back(this);
    in_all_ = std::prev(st_->all.end());
  }
  ~session() {
    leave_evictable();
    st_->all.erase(in_all_);
  }

  void start() { wait_for_request(true); }

  /// Closes the connection at once (eviction, timeouts, server stop).
  void drop() {
    if (phase_ == phase::responding) {
      fire_on_close();
    }
    close();
  }

  // -- called on the io thread by the response object --------------------------------
  void send_whole(int status, const std::string& type, std::string body,
                  const header_list& headers) {
    std::string s = status_line(status) + "Content-Type: " + type +
                    "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    for (const auto& [k, v] : headers) {
      s += k + ": " + v + "\r\n";
    }
    s += cors_lines() + connection_header();
    if (!head_) {
      s += body;
    }
    write(std::move(s), true);
  }
  void start_stream(int status, const std::string& type, const header_list& headers) {
    chunked_ = version_ >= 11;
    if (!chunked_) {
      keep_alive_ = false;  // an HTTP/1.0 body without a length ends with the connection
    }
    std::string s = status_line(status) + "Content-Type: " + type +
                    "\r\nCache-Control: no-cache\r\n" +
                    (chunked_ ? "Transfer-Encoding: chunked\r\n" : "");
    for (const auto& [k, v] : headers) {
      s += k + ": " + v + "\r\n";
    }
    s += cors_lines() + connection_header();
    write(std::move(s), false);
  }
  void chunk(const std::string& data) {
    if (head_) {
      return;
    }
    if (!chunked_) {
      write(data, false);
      return;
    }
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    write(std::string(size) + data + "\r\n", false);
  }
  void end() { write(chunked_ && !head_ ? "0\r\n\r\n" : "", true); }
  void set_on_close(std::function<void()> fn) {
    if (phase_ == phase::closed || closed_) {
      fn();
    } else {
      on_close_ = std::move(fn);
    }
  }

 private:
  std::string status_line(int status) const {
    return (version_ >= 11 ? "HTTP/1.1 " : "HTTP/1.0 ") + std::to_string(status) + " " +
           reason_phrase(status) + "\r\n";
  }
  std::string connection_header() const {
    return keep_alive_ ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  }
  /// The CORS header lines of this request's answer (none unless its Origin is allowed).
  std::string cors_lines() const {
    std::string s;
    for (const auto& [k, v] : cors_) {
      s += k + ": " + v + "\r\n";
    }
    return s;
  }

  // -- phases -------------------------------------------------------------------------

  void enter(phase p) {
    phase_ = p;
    if (p == phase::idle || p == phase::reading) {
      if (!in_list_) {
        st_->evictable.push_back(this);
        where_ = std::prev(st_->evictable.end());
        in_list_ = true;
      }
    } else {
      leave_evictable();
    }
  }
  void leave_evictable() {
    if (in_list_) {
      st_->evictable.erase(where_);
      in_list_ = false;
    }
  }

  /// Runs `on_expiry` after `d` unless the timer is re-armed or cancelled first.
  void arm(std::chrono::milliseconds d) {
    const uint64_t gen = ++timer_gen_;
    timer_.expires_after(d);
    timer_.async_wait([self = shared_from_this(), gen](beast::error_code ec) {
      if (ec || gen != self->timer_gen_ || self->closed_) {
        return;
      }
      self->st_->count([](server_counters& c) { ++c.timed_out; });
      self->drop();
    });
  }
  void disarm() {
    ++timer_gen_;
    timer_.cancel();
  }

  /// Idle: waits for the first byte of the next request (or reads what is buffered).
  void wait_for_request(bool fresh) {
    enter(phase::idle);
    if (buffer_.size() > 0) {
      read_header();
      return;
    }
    arm(fresh ? st_->limits.header : st_->limits.keep_alive);
    socket_.async_wait(tcp::socket::wait_read,
                       [self = shared_from_this()](beast::error_code ec) {
                         if (ec || self->closed_) {
                           self->close();
                           return;
                         }
                         self->read_header();
                       });
  }

  void read_header() {
    enter(phase::reading);
    cors_.clear();  // the previous request's, on a keep-alive connection
    arm(st_->limits.header);
    parser_.emplace();
    parser_->body_limit(st_->limits.body_bytes);
    parser_->header_limit(st_->limits.header_bytes);
    bhttp::async_read_header(socket_, buffer_, *parser_,
                             [self = shared_from_this()](beast::error_code ec, size_t) {
                               self->on_header(ec);
                             });
  }

  void on_header(beast::error_code ec) {
    if (ec) {
      return protocol_error(ec);
    }
    auto& req = parser_->get();
    version_ = req.version() >= 11 ? 11 : 10;
    keep_alive_ = req.keep_alive();
    if (st_->cors.enabled()) {
      cors_ = st_->cors.response_headers(header(req, bhttp::field::origin));
    }
    if (req.count(bhttp::field::content_length) > 0 &&
        req.count(bhttp::field::transfer_encoding) > 0) {
      // two framings of one body: a request smuggling vector (RFC 9112 section 6.1)
      st_->count([](server_counters& c) { ++c.bad_request; });
      return refuse(400, "malformed HTTP request: both Content-Length and Transfer-Encoding",
                    "bad_request");
    }
    if (auto it = req.find(bhttp::field::expect); it != req.end()) {
      if (!beast::iequals(it->value(), "100-continue")) {
        return refuse(417, "Expect: only 100-continue is supported", "expectation_failed");
      }
      if (const auto n = parser_->content_length(); n && *n > st_->limits.body_bytes) {
        return body_too_large();
      }
      if (version_ >= 11 && !parser_->is_done()) {
        arm(st_->limits.body);
        continue_ = "HTTP/1.1 100 Continue\r\n\r\n";
        net::async_write(socket_, net::buffer(continue_),
                         [self = shared_from_this()](beast::error_code wec, size_t) {
                           if (wec) {
                             self->close();
                             return;
                           }
                           self->read_body();
                         });
        return;
      }
    }
    read_body();
  }

  void read_body() {
    if (parser_->is_done()) {
      return dispatch();
    }
    arm(st_->limits.body);
    bhttp::async_read(socket_, buffer_, *parser_,
                      [self = shared_from_this()](beast::error_code ec, size_t) {
                        if (ec) {
                          return self->protocol_error(ec);
                        }
                        self->dispatch();
                      });
  }

  /// A request that could not be read: answered when the client can be told why.
  void protocol_error(beast::error_code ec) {
    if (closed_ || ec == net::error::operation_aborted || ec == bhttp::error::end_of_stream ||
        ec == bhttp::error::partial_message || ec == net::error::eof ||
        ec == net::error::connection_reset || ec == net::error::broken_pipe) {
      close();  // the client went away (or a timeout closed the socket)
      return;
    }
    if (ec == bhttp::error::body_limit) {
      return body_too_large();
    }
    if (ec == bhttp::error::header_limit) {
      st_->count([](server_counters& c) { ++c.header_too_large; });
      return refuse(431, "request header larger than the limit of " +
                             std::to_string(st_->limits.header_bytes) + " bytes",
                    "request_header_fields_too_large");
    }
    if (ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category()) {
      st_->count([](server_counters& c) { ++c.bad_request; });
      return refuse(400, "malformed HTTP request: " + ec.message(), "bad_request");
    }
    close();
  }

  void body_too_large() {
    st_->count([](server_counters& c) { ++c.body_too_large; });
    refuse(413, "request body larger than the limit of " + std::to_string(st_->limits.body_bytes) +
                    " bytes",
           "request_too_large");
  }

  /// Answers with an error and closes: the rest of the stream cannot be trusted.
  void refuse(int status, const std::string& message, const std::string& code) {
    keep_alive_ = false;
    linger_ = true;
    head_ = false;
    enter(phase::responding);
    disarm();
    send_whole(status, "application/json", error_body(message, "invalid_request_error", code),
               {});
  }

  void dispatch() {
    auto& req = parser_->get();
    request r;
    r.method = std::string(req.method_string());
    r.target = std::string(req.target());
    if (auto q = r.target.find('?'); q != std::string::npos) {
      r.target.resize(q);
    }
    r.body = std::move(req.body());
    if (auto it = req.find(bhttp::field::authorization); it != req.end()) {
      r.authorization = std::string(it->value());
    }
    r.peer = peer_;
    head_ = r.method == "HEAD";
    if (head_) {
      r.method = "GET";
      r.head = true;
    }
    keep_alive_ = req.keep_alive();
    chunked_ = false;
    done_ = false;
    on_close_ = nullptr;
    enter(phase::responding);
    disarm();
    watch();
    if (st_->cors.enabled() && r.method == "OPTIONS" &&
        req.count(bhttp::field::access_control_request_method) > 0) {
      return answer_preflight(req);
    }
    auto res = make_response();
    try {
      st_->h(std::move(r), res);
    } catch (const std::exception& e) {
      handler_failed(e.what());
    } catch (...) {
      handler_failed("unknown exception");
    }
  }

  /// A CORS preflight, answered for any path without the handler (no API key comes with
  /// one): 204 with the Access-Control-* headers, or 400 with none.
  void answer_preflight(const bhttp::request<bhttp::string_body>& req) {
    const preflight_answer a =
        st_->cors.preflight(header(req, bhttp::field::origin),
                            header(req, bhttp::field::access_control_request_method),
                            header(req, bhttp::field::access_control_request_headers));
    if (a.status != 204) {
      cors_.clear();
      return send_whole(a.status, "application/json",
                        error_body(a.message, "invalid_request_error", "cors_not_allowed"), {});
    }
    cors_ = a.headers;
    write(status_line(204) + cors_lines() + connection_header(), true);  // no body, no length
  }

  static std::string_view header(const bhttp::request<bhttp::string_body>& req,
                                 bhttp::field f) {
    const auto it = req.find(f);
    if (it == req.end()) {
      return {};
    }
    return std::string_view(it->value().data(), it->value().size());
  }

  void handler_failed(const char* what) {
    st_->count([](server_counters& c) { ++c.handler_errors; });
    std::fprintf(stderr, "baton: internal error while handling a request from %s: %s\n",
                 peer_.c_str(), what);
    if (!done_ && out_.empty() && !writing_ && !closed_) {
      keep_alive_ = false;
      send_whole(500, "application/json",
                 error_body("internal server error", "server_error", "internal_error"), {});
    }
  }

  std::shared_ptr<response> make_response();

  /// While a response is pending: a read that completes only when the client sends
  /// more (kept, up to a bound, for the next request) or goes away (on_close).
  void watch() {
    if (watching_ || closed_) {
      return;
    }
    watching_ = true;
    const size_t room = 4096;
    socket_.async_read_some(buffer_.prepare(room), [self = shared_from_this()](
                                                       beast::error_code ec, size_t n) {
      self->watching_ = false;
      if (ec == net::error::operation_aborted && !self->closed_ &&
          self->phase_ != phase::responding) {
        self->wait_for_request(false);  // cancelled to parse a pipelined request
        return;
      }
      if (ec) {
        self->fire_on_close();
        if (!self->writing_) {
          self->close();
        } else {
          self->closed_ = true;  // the write under way fails or ends; then close
        }
        return;
      }
      self->buffer_.commit(n);
      if (self->phase_ != phase::responding) {
        self->wait_for_request(false);
      } else if (self->buffer_.size() > self->st_->limits.max_pipelined_bytes) {
        self->st_->count([](server_counters& c) { ++c.dropped_slow; });
        self->drop();  // pushing bytes while its request runs: drop, cancel the request
      } else {
        self->watch();  // a pipelined request waits in the buffer
      }
    });
  }

  void fire_on_close() {
    if (phase_ == phase::responding && !done_ && on_close_) {
      auto fn = std::move(on_close_);
      on_close_ = nullptr;
      fn();
    }
  }

  void write(std::string data, bool last) {
    if (closed_) {
      return;
    }
    if (last) {
      done_ = true;
    }
    unsent_ += data.size();
    out_.push_back(std::move(data));
    if (!writing_) {
      write_next();
    } else if (unsent_ > st_->limits.max_unsent_bytes) {
      st_->count([](server_counters& c) { ++c.dropped_slow; });
      drop();  // the client stopped reading: cancel its request rather than buffer more
    }
  }

  void write_next() {
    if (closed_) {
      close();  // the client went away while a write was under way: now release it
      return;
    }
    if (out_.empty()) {
      writing_ = false;
      disarm();
      if (done_) {
        if (!keep_alive_ && linger_) {
          linger();
        } else if (!keep_alive_) {
          close();
        } else if (watching_) {
          beast::error_code ignored;
          socket_.cancel(ignored);  // the watch ends with operation_aborted: next request
          phase_ = phase::idle;
        } else {
          wait_for_request(false);
        }
      }
      return;
    }
    writing_ = true;
    current_ = std::move(out_.front());
    out_.pop_front();
    unsent_ -= current_.size();
    arm(st_->limits.send);
    net::async_write(socket_, net::buffer(current_),
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (ec) {
                         self->out_.clear();
                         self->writing_ = false;
                         self->fire_on_close();
                         self->close();
                         return;
                       }
                       self->write_next();
                     });
  }

  /// After a refusal the client may still be sending (a body over the limit): stop
  /// sending, read and discard for a moment so that the answer is not lost to a reset.
  void linger() {
    beast::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
    if (ec) {
      return close();
    }
    arm(std::chrono::milliseconds(2000));
    discard();
  }
  void discard() {
    buffer_.clear();
    socket_.async_read_some(buffer_.prepare(64 * 1024),
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              if (ec || self->closed_) {
                                return self->close();
                              }
                              self->discard();
                            });
  }

  void close() {
    if (phase_ == phase::closed) {
      return;
    }
    closed_ = true;
    phase_ = phase::closed;
    leave_evictable();
    disarm();
    beast::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    st_->count([](server_counters& c) { --c.connections_open; });
  }

  // -- member variables -------------------------------------------------------
  std::shared_ptr<shared_state> st_;  // first: the socket and timer use its io_context
  tcp::socket socket_;
  net::steady_timer timer_;
  std::string peer_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::deque<std::string> out_;     ///< queued writes
  uint64_t unsent_ = 0;             ///< bytes in out_
  std::string current_;             ///< the write under way
  std::string continue_;
  std::function<void()> on_close_;
  header_list cors_;                ///< this request's CORS headers (cors.hpp)
  std::list<session*>::iterator where_;
  std::list<session*>::iterator in_all_;
  uint64_t timer_gen_ = 0;
  phase phase_ = phase::idle;
  int version_ = 11;
  bool in_list_ = false;
  bool writing_ = false;
  bool watching_ = false;
  bool done_ = false;
  bool head_ = false;
  bool chunked_ = false;
  bool keep_alive_ = true;
  bool linger_ = false;
  bool closed_ = false;
};

/// The handler's side of one response: every call hops onto the io thread.
class session_response final : public response {
 public:
  session_response(std::shared_ptr<session> s, std::shared_ptr<shared_state> st)
      : s_(std::move(s)), st_(std::move(st)) {}

  void send(int status, const std::string& content_type, std::string body,
            header_list headers) override {
    post([status, content_type, body = std::move(body), headers = std::move(headers)](
             session& s) mutable { s.send_whole(status, content_type, std::move(body), headers); });
  }
  void start_stream(int status, const std::string& content_type, header_list headers) override {
    post([status, content_type, headers = std::move(headers)](session& s) {
      s.start_stream(status, content_type, headers);
    });
  }
  void chunk(std::string data) override {
    if (data.empty()) {
      return;  // an empty chunk would end the stream
    }
    post([data = std::move(data)](session& s) { s.chunk(data); });
  }
  void end() override {
    post([](session& s) { s.end(); });
  }
  void on_close(std::function<void()> fn) override {
    post([fn = std::move(fn)](session& s) mutable { s.set_on_close(std::move(fn)); });
  }

 private:
  template <class F>
  void post(F f) {
    if (!st_->alive) {
      return;
    }
    net::post(st_->ioc, [s = s_, f = std::move(f)]() mutable { f(*s); });
  }

  // -- member variables -------------------------------------------------------
  std::shared_ptr<session> s_;
  std::shared_ptr<shared_state> st_;
};

std::shared_ptr<response> session::make_response() {
  return std::make_shared<session_response>(shared_from_this(), st_);
}

}  // namespace

struct server::impl {
  std::shared_ptr<shared_state> st = std::make_shared<shared_state>();
  tcp::acceptor acceptor{st->ioc};
  net::steady_timer backoff{st->ioc};
  std::chrono::milliseconds delay{0};

  /// Closes the oldest idle or partially read connection; false when there is none.
  bool evict_one() {
    if (st->evictable.empty()) {
      return false;
    }
    session* victim = st->evictable.front();
    st->count([](server_counters& c) { ++c.evicted; });
    victim->drop();
    return true;
  }

  void accept() {
    acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec == net::error::operation_aborted || !acceptor.is_open()) {
        return;
      }
      if (ec) {
        // out of descriptors (or another transient failure): make room, back off, retry;
        // never spin on an error that repeats
        st->count([](server_counters& c) { ++c.accept_errors; });
        evict_one();
        delay = std::min(std::chrono::milliseconds(1000),
                         std::max(std::chrono::milliseconds(10), delay * 2));
        backoff.expires_after(delay);
        backoff.async_wait([this](beast::error_code wec) {
          if (!wec) {
            accept();
          }
        });
        return;
      }
      delay = std::chrono::milliseconds(0);
      bool admit = true;
      {
        std::lock_guard<std::mutex> lock(st->counters_mu);
        admit = st->counters.connections_open < st->limits.max_connections;
      }
      if (!admit) {
        admit = evict_one();
      }
      if (admit) {
        beast::error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        st->count([](server_counters& c) {
          ++c.connections_open;
          ++c.connections_total;
        });
        std::make_shared<session>(std::move(socket), st)->start();
      }  // else every connection is busy with a request: the new one is closed
      accept();
    });
  }
};

result<std::unique_ptr<server>> server::create(const std::string& host, uint16_t port, handler h,
                                               server_limits limits, cors_policy cors) {
  std::unique_ptr<server> s(new server());
  s->impl_ = std::make_unique<impl>();
  s->impl_->st->h = std::move(h);
  s->impl_->st->limits = limits;
  s->impl_->st->cors = std::move(cors);
  beast::error_code ec;
  const auto addr = net::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
  if (ec) {
    return make_error("--host %s: not an IP address (%s)", host.c_str(), ec.message().c_str());
  }
  tcp::endpoint ep(addr, port);
  auto& a = s->impl_->acceptor;
  a.open(ep.protocol(), ec);
  if (!ec) {
    a.set_option(net::socket_base::reuse_address(true), ec);
  }
  if (!ec) {
    a.bind(ep, ec);
  }
  if (!ec) {
    a.listen(net::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    return make_error("cannot listen on %s:%u: %s", host.c_str(), port, ec.message().c_str());
  }
  s->impl_->accept();
  return s;
}

server::~server() {
  impl_->st->alive = false;
  beast::error_code ec;
  impl_->acceptor.close(ec);
  impl_->backoff.cancel();
  // every session still open closes; their pending handlers are destroyed with the
  // io_context, which lives on (held by responses) until the last response is gone
  const std::vector<session*> open(impl_->st->all.begin(), impl_->st->all.end());
  for (session* s : open) {
    s->drop();
  }
  impl_->st->ioc.restart();
  impl_->st->ioc.poll();
}

uint16_t server::port() const { return impl_->acceptor.local_endpoint().port(); }

void server::run() { impl_->st->ioc.run(); }

void server::stop() {
  net::post(impl_->st->ioc, [this] {
    beast::error_code ec;
    impl_->acceptor.close(ec);
    impl_->st->ioc.stop();
  });
}

server_counters server::counters() const {
  std::lock_guard<std::mutex> lock(impl_->st->counters_mu);
  return impl_->st->counters;
}

}  // namespace baton::http
