"""A local stand-in of the Slack Web API (chat.postMessage, chat.update), for the local stack and tests.

    python -m upgradectl.local.slack_standin --port 3101      then  upgrade-local --slack-api http://localhost:3101/api

It answers like Slack (`{"ok": true, "ts": ...}`, `{"ok": false, "error": "invalid_auth"}`), checks each
call (the bot token, a channel, text, an existing `ts` to update or thread on) and keeps the messages:
GET /messages shows each message as it reads now, its update count and its threaded replies.
"""

from __future__ import annotations

import argparse
import http.server
import json
import threading
import time
from typing import Any

from upgradectl.local.server import write_json


class SlackStandIn:
    def __init__(self, *, token: str = "xoxb-local", host: str = "127.0.0.1", port: int = 0) -> None:  # noqa: S107 - a stand-in's token
        self.token = token
        self.messages: dict[str, dict[str, Any]] = {}  # ts -> message
        self.calls: list[dict[str, Any]] = []  # every call, in order: method, payload, answer, at
        self.problems: list[str] = []  # calls Slack would refuse
        self._lock = threading.Lock()
        self._next = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    payload = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    payload = {}
                answer = outer.handle(self.path.rsplit("/", 1)[-1], payload, self.headers.get("Authorization", ""))
                self._send(answer)

            def do_GET(self) -> None:  # noqa: N802
                self._send({"ok": True, "messages": outer.snapshot(), "problems": outer.problems})

            def _send(self, body: dict[str, Any]) -> None:
                write_json(self, 200, body)  # Slack answers errors with 200 and ok: false

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = http.server.ThreadingHTTPServer((host, port), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/api"
        self._thread = threading.Thread(target=self.server.serve_forever, name="slack-standin", daemon=True)

    def start(self) -> SlackStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> SlackStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def handle(self, method: str, payload: dict[str, Any], authorization: str) -> dict[str, Any]:
        with self._lock:
            answer = self._answer(method, payload, authorization)
            self.calls.append({"method": method, "payload": payload, "answer": answer, "at": time.monotonic()})
            return answer

    def _answer(self, method: str, payload: dict[str, Any], authorization: str) -> dict[str, Any]:
        if authorization != f"Bearer {self.token}":
            return {"ok": False, "error": "invalid_auth" if authorization else "not_authed"}
        channel, text = payload.get("channel"), payload.get("text")
        if not channel:
            return self._refuse(method, "channel_not_found")
        if not text:
            return self._refuse(method, "no_text")
        if method == "chat.postMessage":
            thread = payload.get("thread_ts")
            if thread is not None and thread not in self.messages:
                return self._refuse(method, "thread_not_found")
            self._next += 1
            ts = f"{1_800_000_000 + self._next}.000100"
            self.messages[ts] = {"ts": ts, "channel": channel, "text": text, "updates": 0, "thread_ts": thread,
                                 "replies": []}  # fmt: skip
            if thread is not None:
                self.messages[thread]["replies"].append(ts)
            return {"ok": True, "channel": channel, "ts": ts}
        if method == "chat.update":
            target = str(payload.get("ts"))
            if target not in self.messages:
                return self._refuse(method, "message_not_found")
            self.messages[target]["text"] = text
            self.messages[target]["updates"] += 1
            return {"ok": True, "channel": channel, "ts": target, "text": text}
        return self._refuse(method, "unknown_method")

    def _refuse(self, method: str, error: str) -> dict[str, Any]:
        self.problems.append(f"{method}: {error}")
        return {"ok": False, "error": error}

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(m) for m in self.messages.values()]

    def top_level(self) -> list[dict[str, Any]]:
        return [m for m in self.snapshot() if m["thread_ts"] is None]


def main() -> None:
    parser = argparse.ArgumentParser(description="A local stand-in of the Slack Web API.")
    parser.add_argument("--port", type=int, default=3101)
    parser.add_argument("--token", default="xoxb-local", help="the bot token it accepts (default xoxb-local)")
    args = parser.parse_args()
    standin = SlackStandIn(token=args.token, port=args.port).start()
    print(f"Slack stand-in at {standin.url} (token {args.token}); messages: GET {standin.url}/messages", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        standin.stop()


if __name__ == "__main__":
    main()
