"""Another local process (another user's shell, a CI job on the same runner) trying to make a running
`upgrade-customers console` sign for it: everything it can try without the operator's terminal.

    python -m tests.console.second_process PORT

Prints one JSON object: what each attempt was answered. Nothing here knows how the console guards
itself; it takes whatever it is handed (a token in config.json, a cookie from any page) and uses it.
"""

from __future__ import annotations

import http.client
import json
import re
import sys
from pathlib import Path
from typing import Any


def ask(port: int, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, Any, list[str]]:
    """(status, JSON body or text, Set-Cookie values), addressed to the console's own name."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, target, body=body or None, headers={"Host": f"localhost:{port}", **headers})
    response = conn.getresponse()
    raw = response.read()
    cookies = [c.split(";", 1)[0] for c in response.headers.get_all("Set-Cookie") or []]
    conn.close()
    try:
        return response.status, json.loads(raw), cookies
    except ValueError:
        return response.status, raw.decode("utf-8", "replace")[:300], cookies


def keys_in_command_lines() -> list[str]:
    """Sign-in keys visible in any process's command line (a browser opened with the link would show it)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        found += re.findall(r"[?&]token=([A-Za-z0-9_%-]+)", text)
    return found


def attempt(port: int) -> dict[str, Any]:
    tried: dict[str, Any] = {}
    status, config, cookies = ask(port, "GET", "/console/config.json", {})
    tried["config"] = status
    token = config.get("token") if isinstance(config, dict) else None
    tried["token_found"] = bool(token)
    for page in ("/", "/admin/queues", "/console/console.js"):
        cookies += ask(port, "GET", page, {})[2]
    keys = keys_in_command_lines()
    tried["keys_in_command_lines"] = len(keys)
    for key in [*keys, token or "guess"]:
        cookies += ask(port, "GET", f"/admin/queues?token={key}", {})[2]
    tried["cookies_found"] = len(cookies)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["X-Console-Token"] = token
    if cookies:
        headers["Cookie"] = "; ".join(cookies)
    plan = json.dumps({"component": "api", "version": "v6.6.6", "strategy": "all"}).encode()
    tried["plan"] = ask(port, "POST", "/api/upgrades/plan", headers, plan)[0]
    tried["fleet"] = ask(port, "GET", "/api/fleet", headers)[0]
    tried["fleet_head"] = ask(port, "HEAD", "/api/fleet", headers)[0]
    return tried


if __name__ == "__main__":
    print(json.dumps(attempt(int(sys.argv[1]))))
