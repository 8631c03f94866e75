"""Local HTTP servers for tests: real HTTP on 127.0.0.1 with scripted answers, errors and delays.

`LocalJSONServer` holds the plumbing (threads, request log, concurrency count); `OpenAIServer` speaks the
OpenAI chat-completions format. Other protocols (e.g. Google Translate v2 in test_translate_api.py) subclass the base.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    """What the server answers to one request."""

    text: str = "ok"
    status: int = 200
    headers: dict = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (timeouts, concurrency)
    raw: str | None = None  # a body sent as-is (malformed answers)
    prompt_tokens: int = 10
    completion_tokens: int = 20
    finish_reason: str = "stop"  # "length": the answer was cut at max_tokens


class LocalJSONServer:
    """`with Server() as server:` serves POSTed JSON on 127.0.0.1; subclasses implement `answer`."""

    def __init__(self, port: int = 0):
        self.requests: list[dict] = []
        self.request_headers: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"

    def record(self, path: str, body: dict) -> dict:
        """What goes into `self.requests` for one request."""
        return body

    def answer(self, n: int, path: str, body: dict) -> Reply:
        raise NotImplementedError

    def payload(self, reply: Reply, body: dict) -> bytes:
        """The response body for a non-raw reply."""
        raise NotImplementedError

    def __enter__(self):
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                path = self.path.split("?")[0]
                with server._lock:
                    n = len(server.requests)
                    server.requests.append(server.record(path, body))
                    server.request_headers.append({k.lower(): v for k, v in self.headers.items()})
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    reply = server.answer(n, path, body)
                    if reply.delay:
                        time.sleep(reply.delay)
                    data = reply.raw.encode() if reply.raw is not None else server.payload(reply, body)
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with server._lock:
                        server.in_flight -= 1

        return Handler


class OpenAIServer(LocalJSONServer):
    """`with OpenAIServer(respond) as server:` — `respond(n, body) -> Reply` is called for each request (n from 0)."""

    def __init__(self, respond: Callable[[int, dict], Reply], port: int = 0):
        super().__init__(port)
        self.respond = respond
        self.base_url = self.endpoint + "/v1"

    def answer(self, n: int, path: str, body: dict) -> Reply:
        return self.respond(n, body)

    def payload(self, reply: Reply, body: dict) -> bytes:
        if reply.status != 200:
            return json.dumps({"error": {"message": f"status {reply.status}", "type": "test"}}).encode()
        return json.dumps(
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "test-model"),
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": reply.finish_reason,
                        "message": {"role": "assistant", "content": reply.text},
                    }
                ],
                "usage": {
                    "prompt_tokens": reply.prompt_tokens,
                    "completion_tokens": reply.completion_tokens,
                    "total_tokens": reply.prompt_tokens + reply.completion_tokens,
                },
            },
            ensure_ascii=False,
        ).encode()
