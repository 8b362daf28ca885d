// http_server.hpp.
#include "launch/http_server.hpp"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <deque>
#include <optional>
#include <sstream>

namespace baton::http {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;

namespace {

std::string reason_phrase(int status) {
  return std::string(bhttp::obsolete_reason(static_cast<bhttp::status>(status)));
}

/// One client connection: reads a request, hands it over, writes the answer.
class session : public std::enable_shared_from_this<session> {
 public:
  session(tcp::socket socket, handler& h, uint64_t body_limit)
      : stream_(std::move(socket)), handler_(h), body_limit_(body_limit) {}

  void start() { read_request(); }

  // -- called on the io thread by the response object --------------------------------
  void write(std::string data, bool last) {
    out_.push_back(std::move(data));
    if (last) {
      done_ = true;
    }
    if (!writing_) {
      write_next();
    }
  }
  void set_on_close(std::function<void()> fn) { on_close_ = std::move(fn); }
  bool keep_alive() const { return keep_alive_; }
  net::any_io_executor executor() { return stream_.get_executor(); }

 private:
  void read_request() {
    parser_.emplace();
    parser_->body_limit(body_limit_);
    parser_->header_limit(64 * 1024);
    done_ = false;
    on_close_ = nullptr;
    bhttp::async_read(stream_, buffer_, *parser_,
                      [self = shared_from_this()](beast::error_code ec, size_t) {
                        self->on_request(ec);
                      });
  }

  void on_request(beast::error_code ec) {
    if (ec == bhttp::error::body_limit) {
      keep_alive_ = false;
      const std::string body =
          R"({"error":{"message":"request body larger than the limit of )" +
          std::to_string(body_limit_) +
          R"( bytes","type":"invalid_request_error","param":null,"code":"request_too_large"}})";
      in_response_ = true;
      write(whole(413, "application/json", body, {}), true);
      return;
    }
    if (ec) {
      close();
      return;
    }
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
    keep_alive_ = req.keep_alive();
    in_response_ = true;
    watch();
    handler_(std::move(r), make_response());
  }

  std::shared_ptr<response> make_response();

  /// While a response is pending: a read that completes only when the client sends
  /// more (kept for the next request) or goes away (on_close).
  void watch() {
    if (watching_) {
      return;
    }
    watching_ = true;
    stream_.async_read_some(buffer_.prepare(4096), [self = shared_from_this()](
                                                       beast::error_code ec, size_t n) {
      self->watching_ = false;
      if (ec == net::error::operation_aborted && !self->closed_ && !self->in_response_) {
        self->read_request();  // cancelled to parse a pipelined request already buffered
        return;
      }
      if (ec) {
        self->closed_ = true;
        if (self->in_response_ && self->on_close_) {
          auto fn = std::move(self->on_close_);
          fn();
        }
        if (!self->writing_) {
          self->close();
        }
        return;
      }
      self->buffer_.commit(n);
      if (self->in_response_) {
        self->watch();  // a pipelined request waits in the buffer
      } else {
        self->read_request();
      }
    });
  }

  void write_next() {
    if (out_.empty()) {
      writing_ = false;
      if (done_) {
        in_response_ = false;
        if (!keep_alive_ || closed_) {
          close();
        } else if (!watching_) {
          read_request();
        } else if (buffer_.size() > 0) {
          beast::error_code ignored;
          stream_.socket().cancel(ignored);  // the next request is here: stop watching
        }
      }
      return;
    }
    writing_ = true;
    current_ = std::move(out_.front());
    out_.pop_front();
    net::async_write(stream_, net::buffer(current_),
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (ec) {
                         self->closed_ = true;
                         self->out_.clear();
                         self->writing_ = false;
                         if (self->in_response_ && self->on_close_) {
                           auto fn = std::move(self->on_close_);
                           fn();
                         }
                         self->close();
                         return;
                       }
                       self->write_next();
                     });
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

 public:
  std::string whole(int status, const std::string& type, const std::string& body,
                    const header_list& headers) const {
    std::string s = "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) +
                    "\r\nContent-Type: " + type +
                    "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    for (const auto& [k, v] : headers) {
      s += k + ": " + v + "\r\n";
    }
    s += keep_alive_ ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
    s += body;
    return s;
  }
  bool closed() const { return closed_; }

 private:
  // -- member variables -------------------------------------------------------
  beast::tcp_stream stream_;
  handler& handler_;
  uint64_t body_limit_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::deque<std::string> out_;
  std::string current_;
  std::function<void()> on_close_;
  bool writing_ = false;
  bool watching_ = false;
  bool in_response_ = false;
  bool done_ = false;
  bool keep_alive_ = true;
  bool closed_ = false;
};

/// The handler's side of one response: every call hops onto the io thread.
class session_response final : public response {
 public:
  explicit session_response(std::shared_ptr<session> s) : s_(std::move(s)) {}

  void send(int status, const std::string& content_type, std::string body,
            header_list headers) override {
    post([status, content_type, body = std::move(body), headers = std::move(headers)](session& s) {
      s.write(s.whole(status, content_type, body, headers), true);
    });
  }
  void start_stream(int status, const std::string& content_type) override {
    post([status, content_type](session& s) {
      std::string h = "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) +
                      "\r\nContent-Type: " + content_type +
                      "\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n" +
                      (s.keep_alive() ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n");
      s.write(std::move(h), false);
    });
  }
  void chunk(std::string data) override {
    if (data.empty()) {
      return;  // an empty chunk would end the stream
    }
    post([data = std::move(data)](session& s) {
      std::ostringstream os;
      os << std::hex << data.size() << "\r\n" << data << "\r\n";
      s.write(os.str(), false);
    });
  }
  void end() override {
    post([](session& s) { s.write("0\r\n\r\n", true); });
  }
  void on_close(std::function<void()> fn) override {
    post([fn = std::move(fn)](session& s) {
      if (s.closed()) {
        fn();
      } else {
        s.set_on_close(fn);
      }
    });
  }

 private:
  template <class F>
  void post(F f) {
    auto s = s_;
    net::post(s->executor(), [s, f = std::move(f)]() mutable { f(*s); });
  }

  // -- member variables -------------------------------------------------------
  std::shared_ptr<session> s_;
};

std::shared_ptr<response> session::make_response() {
  return std::make_shared<session_response>(shared_from_this());
}

}  // namespace

struct server::impl {
  net::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  handler h;
  uint64_t body_limit = 0;

  void accept() {
    acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec == net::error::operation_aborted) {
        return;
      }
      if (!ec) {
        socket.set_option(tcp::no_delay(true));
        std::make_shared<session>(std::move(socket), h, body_limit)->start();
      }
      accept();
    });
  }
};

result<std::unique_ptr<server>> server::create(const std::string& host, uint16_t port, handler h,
                                               uint64_t body_limit) {
  std::unique_ptr<server> s(new server());
  s->impl_ = std::make_unique<impl>();
  s->impl_->h = std::move(h);
  s->impl_->body_limit = body_limit;
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

server::~server() = default;

uint16_t server::port() const { return impl_->acceptor.local_endpoint().port(); }

void server::run() { impl_->ioc.run(); }

void server::stop() {
  net::post(impl_->ioc, [this] {
    beast::error_code ec;
    impl_->acceptor.close(ec);
    impl_->ioc.stop();
  });
}

}  // namespace baton::http
