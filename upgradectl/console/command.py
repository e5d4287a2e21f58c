"""`upgrade-customers console`: serve the web console on localhost for an API in AWS (see proxy.py)."""

from __future__ import annotations

import argparse
import contextlib
import html
import os
import signal
import tempfile
import threading
import webbrowser
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from upgradectl.client import DEFAULT_API_URL
from upgradectl.console.proxy import ConsoleServer, ProxyState
from upgradectl.console.signing import ConsoleSetupError, caller_identity, make_signer

DEFAULT_PORT = 3200


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "console",
        parents=[common],
        help="the web console on localhost for the API in AWS (every request signed with your credentials)",
        description="Serve the rollout console on localhost and forward its API requests to --api-url, each "
        "signed with SigV4 (execute-api) with your own AWS credentials. With a viewer policy the console is "
        "read-only. The local stack (make run) serves the same console itself at /admin/queues.",
    )
    # the top-level connection flags, also accepted after the command (`console --api-url https://…`)
    suppress = argparse.SUPPRESS
    parser.add_argument(
        "--api-url", default=suppress, help="the upgrade API, e.g. https://<id>.execute-api.<region>.amazonaws.com/v1"
    )
    parser.add_argument("--region", default=suppress, help="SigV4 region (default: from the URL, then $AWS_REGION)")
    parser.add_argument("--profile", default=suppress, help="AWS profile for the credentials (default chain)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"local port (default {DEFAULT_PORT}; 0: any free port)"
    )
    parser.add_argument("--open", action="store_true", help="open the console in your browser")
    parser.add_argument("--read-only", action="store_true",
                        help="hide every action, whatever your credentials allow")  # fmt: skip


def run(args: argparse.Namespace, *, out: TextIO, err: TextIO) -> int:
    api_url = str(getattr(args, "api_url", None) or os.environ.get("UPGRADE_API_URL") or DEFAULT_API_URL).rstrip("/")
    if not api_url.startswith(("https://", "http://")):
        print(f"upgrade-customers: error: --api-url must be an http(s) URL, not {api_url!r}", file=err, flush=True)
        return 2
    if args.sign is False:
        print("upgrade-customers: error: the console always signs its requests (IAM is the API's only "
              "authentication); for the local stack open its own console at http://localhost:3100/admin/queues",
              file=err, flush=True)  # fmt: skip
        return 2
    try:
        signer = make_signer(api_url, region=args.region, profile=args.profile)
    except ConsoleSetupError as exc:
        print(f"upgrade-customers: error: {exc}", file=err, flush=True)
        return 1
    state = ProxyState(api_url=api_url, signer=signer, identity=caller_identity(signer, api_url), timeout=args.timeout)
    if args.read_only:
        state.forced_read_only = True
    try:
        server = ConsoleServer(("127.0.0.1", args.port), state)
    except OSError as exc:
        print(f"upgrade-customers: error: cannot listen on 127.0.0.1:{args.port}: {exc}", file=err, flush=True)
        return 1
    url = server.sign_in_url
    print(f"Console: {url}", file=out, flush=True)
    print("  Sign in: open this link once; it signs your browser in (a cookie) and then no longer works",
          file=out, flush=True)  # fmt: skip
    print(f"  API     {api_url}  (SigV4, region {signer.region}, as {state.identity})", file=out, flush=True)
    print("  Stop:   Ctrl-C", file=out, flush=True)
    with _stop_on_signals(), contextlib.ExitStack() as opened:
        try:  # a stop may come while the browser is being opened (webbrowser waits for its command)
            if args.open:
                webbrowser.open(opened.enter_context(_sign_in_file(url)))
            server.serve_forever(poll_interval=0.2)
        except (_StopRequested, KeyboardInterrupt):
            pass
        finally:
            server.server_close()
    print("Console stopped.", file=out, flush=True)
    return 0


class _StopRequested(Exception):
    """SIGINT or SIGTERM arrived."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _StopRequested


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM stop the console, as they stop the local stack, even when SIGINT was inherited as
    ignored (a background job of a script, nohup), which turns off Python's own KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _sign_in_file(url: str) -> Iterator[str]:
    """A file:// URL of a page (readable by this user only) that forwards to the sign-in link, for --open:
    the key stays out of the browser's command line, which every local user can read (as Jupyter does)."""
    with tempfile.TemporaryDirectory(prefix="upgrade-console-") as folder:  # created 0700
        page = Path(folder) / "open.html"
        target = html.escape(url, quote=True)
        descriptor = os.open(page, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as written:
            written.write(
                f'<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url={target}">'
                f'<title>Upgrade console</title><p><a href="{target}">Open the upgrade console</a></p>\n'
            )
        yield page.as_uri()
