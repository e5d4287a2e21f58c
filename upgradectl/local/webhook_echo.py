"""A webhook receiver to try `upgrade-local --webhook URL`: prints one line per event and answers 200.

    python -m upgradectl.local.webhook_echo --port 3102       then  upgrade-local --webhook http://localhost:3102/events

It drops an event id it has already seen (what every receiver should do: see docs/events/README.md).
"""

from __future__ import annotations

import argparse
import http.server
import json
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description="Print the lifecycle events the local stack posts.")
    parser.add_argument("--port", type=int, default=3102)
    parser.add_argument("--json", action="store_true", help="print each whole event as JSON")
    args = parser.parse_args()
    seen: set[str] = set()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            detail = body.get("detail") or {}
            event_id = str(detail.get("eventId"))
            if event_id not in seen:
                seen.add(event_id)
                if args.json:
                    print(json.dumps(body), flush=True)
                else:
                    upgrade, customer = detail.get("upgrade") or {}, detail.get("customer") or {}
                    who = f" {customer['customerId']}" if customer.get("customerId") else ""
                    print(f"{body.get('time')} #{detail.get('eventId')} [{detail.get('severity')}] "
                          f"{body.get('detail-type')}: upgrade {upgrade.get('upgradeId')} "
                          f"{upgrade.get('status')}{who}", flush=True)  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *items: Any) -> None:  # noqa: A002
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"webhook receiver at http://localhost:{args.port}/events", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.server_close()


if __name__ == "__main__":
    main()
