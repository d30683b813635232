"""Shared plumbing of the HTTP stand-ins: threaded HTTP/1.1 server, fault rules, stats, parent watch.

Fault rules are set at start (--faults JSON) or at run time with POST /__faults {"rules": [...]}; each
rule may carry: status (int), body (str), headers (dict), latency_ms (int), truncate (bool: send half
the body then close), count (how many matching requests it applies to; absent = forever), match
(substring of the request path or body that the request must contain). GET /__stats returns counters;
POST /__reset clears rules and counters.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rules: list[dict] = []
        self.stats: dict = {"requests": 0, "by_status": {}}

    def take_fault(self, path: str, body: bytes) -> dict | None:
        with self.lock:
            for rule in self.rules:
                needle = rule.get("match")
                if needle and needle not in path and needle.encode() not in body:
                    continue
                count = rule.get("count")
                if count is not None:
                    if count <= 0:
                        continue
                    rule["count"] = count - 1
                return dict(rule)
        return None

    def count(self, status: int, **extra: int) -> None:
        with self.lock:
            self.stats["requests"] += 1
            key = str(status)
            self.stats["by_status"][key] = self.stats["by_status"].get(key, 0) + 1
            for k, v in extra.items():
                self.stats[k] = self.stats.get(k, 0) + v


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: State

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        if os.environ.get("STAND_IN_VERBOSE"):
            super().log_message(format, *args)

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send(self, status: int, body: bytes, content_type: str = "application/json", headers: dict | None = None,
             truncate: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        if truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        if truncate:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def send_json(self, status: int, obj, headers: dict | None = None) -> None:
        self.send(status, json.dumps(obj).encode(), headers=headers)

    def control(self, method: str, body: bytes) -> bool:
        """Handle /__faults, /__stats, /__reset; True when handled."""
        if self.path == "/__stats" and method == "GET":
            with self.state.lock:
                self.send_json(200, self.state.stats)
            return True
        if self.path == "/__faults" and method == "POST":
            rules = json.loads(body or b"{}").get("rules", [])
            with self.state.lock:
                self.state.rules = rules
            self.send_json(200, {"ok": True})
            return True
        if self.path == "/__reset" and method == "POST":
            with self.state.lock:
                self.state.rules = []
                self.state.stats = {"requests": 0, "by_status": {}}
            self.send_json(200, {"ok": True})
            return True
        return False

    def apply_fault(self, body: bytes) -> dict | None:
        """Sleep for latency; answer an injected status. Returns the rule when the caller must still
        answer (latency-only or truncate rules), None when nothing applies or the answer was sent."""
        rule = self.state.take_fault(self.path, body)
        if rule is None:
            return None
        if rule.get("latency_ms"):
            time.sleep(rule["latency_ms"] / 1000.0)
        status = rule.get("status")
        if status:
            payload = rule.get("body")
            if payload is None:
                payload = json.dumps({"error": {"message": f"injected fault {status}", "type": "stand_in", "code": status}})
            self.state.count(status)
            self.send(status, payload.encode(), headers=rule.get("headers"), truncate=bool(rule.get("truncate")))
            return {"answered": True}
        return rule


def serve(handler_cls: type[Handler], port: int, faults: str | None, parent_pid: int | None) -> None:
    state = State()
    if faults:
        state.rules = json.loads(faults)
    handler_cls.state = state
    server = ThreadingHTTPServer(("127.0.0.1", port), handler_cls)
    server.daemon_threads = True
    print(f"PORT={server.server_address[1]}", flush=True)
    if parent_pid:
        def watch() -> None:
            while True:
                try:
                    os.kill(parent_pid, 0)
                except OSError:
                    os._exit(0)
                time.sleep(0.5)
        threading.Thread(target=watch, daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        sys.stdout.flush()
