#!/usr/bin/env python3
"""A stand-in OpenAI-compatible server for testing `baton client` and `baton bench serve`
without a model: /v1/models, /v1/completions and /v1/chat/completions, streamed (chunked
server-sent events laid out as OpenAI's: a role chunk for chat, one chunk per token, a
chunk with finish_reason, a usage chunk with empty choices when
stream_options.include_usage, then `data: [DONE]`) and not. Token i of a reply is
"w<i> ", so a reply of n tokens is predictable. Errors are OpenAI error objects: 401
without the --api-key, 404 for another model, 400 for a bad request, 429 for a
--fail-fraction of the generation requests (spread evenly, deterministic).

Prints "PORT <n>" on stdout once it listens (--port 0 picks a free one). With --log,
every generation request's JSON body is appended to that file, one per line.
"""
import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def error_body(message, type_, param=None, code=None):
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-openai/0.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    # -- replies -------------------------------------------------------------------
    def send_json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_chunk(self, text):
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def send_event(self, obj):
        self.send_chunk("data: " + (obj if isinstance(obj, str) else json.dumps(obj)) + "\n\n")

    # -- checks --------------------------------------------------------------------
    def authorized(self):
        key = self.server.opts.api_key
        if not key:
            return True
        if self.headers.get("Authorization") == "Bearer " + key:
            return True
        self.send_json(401, error_body(
            "Incorrect API key provided. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error", None, "invalid_api_key"))
        return False

    def do_GET(self):
        if not self.authorized():
            return
        if self.path == "/v1/models":
            self.send_json(200, {"object": "list", "data": [
                {"id": self.server.opts.model, "object": "model", "created": 0,
                 "owned_by": "baton"}]})
        else:
            self.send_json(404, error_body("no route GET %s" % self.path, "invalid_request_error"))

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        if not self.authorized():
            return
        chat = self.path == "/v1/chat/completions"
        if not chat and self.path != "/v1/completions":
            self.send_json(404, error_body("no route POST %s" % self.path, "invalid_request_error"))
            return
        try:
            req = json.loads(raw)
        except ValueError:
            self.send_json(400, error_body("the body is not JSON", "invalid_request_error"))
            return
        if self.server.opts.log:
            with self.server.lock, open(self.server.opts.log, "a") as f:
                f.write(json.dumps(req) + "\n")
        if req.get("model") != self.server.opts.model:
            self.send_json(404, error_body(
                "The model `%s` does not exist." % req.get("model"),
                "invalid_request_error", "model", "model_not_found"))
            return
        n = req.get("max_tokens", 16)
        if not isinstance(n, int) or n < 1:
            self.send_json(400, error_body("max_tokens must be >= 1", "invalid_request_error",
                                           "max_tokens"))
            return
        if chat:
            messages = req.get("messages")
            if not isinstance(messages, list) or not messages:
                self.send_json(400, error_body("messages must be a non-empty array",
                                               "invalid_request_error", "messages"))
                return
            prompt = " ".join(str(m.get("content", "")) for m in messages)
        else:
            prompt = req.get("prompt")
            if not isinstance(prompt, str):
                self.send_json(400, error_body("prompt must be a string",
                                               "invalid_request_error", "prompt"))
                return
        with self.server.lock:
            i = self.server.n_generations
            self.server.n_generations += 1
        f = self.server.opts.fail_fraction
        if int((i + 1) * f) > int(i * f):
            self.send_json(429, error_body("Rate limit reached for requests", "rate_limit_error",
                                           None, "rate_limit_exceeded"))
            return
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": n,
                 "total_tokens": len(prompt.split()) + n}
        tokens = ["w%d " % k for k in range(n)]
        rid = ("chatcmpl-%d" if chat else "cmpl-%d") % i
        created = int(time.time())
        model = self.server.opts.model
        if not req.get("stream"):
            text = "".join(tokens)
            if chat:
                choice = {"index": 0, "message": {"role": "assistant", "content": text},
                          "logprobs": None, "finish_reason": "length"}
            else:
                choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length"}
            time.sleep(self.server.opts.token_delay_ms * n / 1000.0)
            self.send_json(200, {"id": rid, "object": "chat.completion" if chat else
                                 "text_completion", "created": created, "model": model,
                                 "choices": [choice], "usage": usage})
            return

        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        obj = "chat.completion.chunk" if chat else "text_completion"

        def chunk(choices):
            c = {"id": rid, "object": obj, "created": created, "model": model,
                 "choices": choices}
            if include_usage:
                c["usage"] = None
            return c

        if chat:
            self.send_event(chunk([{"index": 0, "delta": {"role": "assistant", "content": ""},
                                    "logprobs": None, "finish_reason": None}]))
        for t in tokens:
            time.sleep(self.server.opts.token_delay_ms / 1000.0)
            if chat:
                c = {"index": 0, "delta": {"content": t}, "logprobs": None, "finish_reason": None}
            else:
                c = {"index": 0, "text": t, "logprobs": None, "finish_reason": None}
            self.send_event(chunk([c]))
        if chat:
            last = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}
        else:
            last = {"index": 0, "text": "", "logprobs": None, "finish_reason": "length"}
        self.send_event(chunk([last]))
        if include_usage:
            self.send_event({"id": rid, "object": obj, "created": created, "model": model,
                             "choices": [], "usage": usage})
        self.send_event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--model", default="mock-model")
    ap.add_argument("--api-key", default="")
    ap.add_argument("--fail-fraction", type=float, default=0.0)
    ap.add_argument("--token-delay-ms", type=float, default=1.0)
    ap.add_argument("--log", default="")
    opts = ap.parse_args()

    ThreadingHTTPServer.request_queue_size = 128
    server = ThreadingHTTPServer(("127.0.0.1", opts.port), Handler)
    server.daemon_threads = True
    server.opts = opts
    server.lock = threading.Lock()
    server.n_generations = 0
    print("PORT %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
