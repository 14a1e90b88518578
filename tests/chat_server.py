"""A real HTTP server on 127.0.0.1 that speaks the chat-completions protocol with scripted replies.

    with ChatServer(script=[429, 500, "9 7\\nfine"], default="8 6\\nok") as server:
        judge = OpenAIJudge("judge-model", JudgeOptions(url=server.url, ...))

Each request takes the next script entry: an int is an HTTP error status, ("sleep", s, text) answers after
s seconds, a str is the reply content, a callable gets the user message and returns the content. When the
script is used up, `default` answers (a str or a callable). Every request's JSON body and headers are kept.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ChatServer:
    def __init__(self, script=(), default="8 6\nThe second answer is close to the reference.", port: int = 0):
        self.port = port
        self.script = list(script)
        self.default = default
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ChatServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append(body)
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                    server.paths.append(self.path)
                    step = server.script.pop(0) if server.script else server.default
                user = body["messages"][-1]["content"]
                if isinstance(step, int):
                    return self._send(step, {"error": {"message": f"scripted {step}", "type": "x"}})
                if isinstance(step, tuple):
                    time.sleep(step[1])
                    step = step[2]
                content = step(user) if callable(step) else step
                reply = {
                    "id": "chatcmpl-test",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
                self._send(200, reply)

            def _send(self, status, obj):
                data = json.dumps(obj).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("retry-after-ms", "10")  # the client honours it: fast retries in tests
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on a slow reply (timeout test)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
