"""`wsm serve`: one location as a standalone server (a pod), reached over TCP or a Unix socket.

It is the manager's own machinery with one location that listens where it is told, with the
shared token as its secret and TLS when a certificate is given. It does not restart the
location: when the location's process ends, `wsm serve` ends too and its orchestrator
restarts it (exit 4: the code does not load; 1: it crashed or hung; 0: clean shutdown).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import ssl
from pathlib import Path
from typing import Optional

from workspace_manager.cli import targets
from workspace_manager.protocol.messages import EXIT_LOAD_ERROR

EXIT_CRASHED = 1


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="run one location as a standalone server (e.g. a Kubernetes pod)",
        description="Run one location as a server speaking wsm's protocol, with a shared "
        "token and optional TLS; a manager reaches it through a grpc_server entry.",
    )
    targets.add_target_args(p)
    p.add_argument("location", nargs="?", metavar="LOCATION", help="with -w: which location")
    p.add_argument("--listen", required=True, metavar="ADDR", help="unix:PATH or tcp://HOST:PORT")
    token = p.add_mutually_exclusive_group()
    token.add_argument("--token-env", metavar="VAR", help="read the shared token from $VAR")
    token.add_argument("--token-file", metavar="FILE", help="read the shared token from FILE")
    p.add_argument("--tls-cert", metavar="FILE", help="serve TLS with this certificate (PEM)")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    p.add_argument(
        "--health", metavar="HOST:PORT", help="serve /livez /readyz /status for the pod's probes"
    )
    p.add_argument(
        "--frozen-envs",
        action="store_true",
        help="never build the environment: use the one `wsm env build` made (the cache may be "
        "read-only); if it is missing, exit as for a load error",
    )
    p.add_argument(
        "--max-message-mb",
        type=_positive_mb,
        metavar="MB",
        help="largest message (a snapshot, a call's answer) in MiB; default: the location's "
        "supervision.max_message_mb, else 64",
    )
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text: human lines (default); json: one JSON object per event, for log shippers",
    )


def run(args: argparse.Namespace) -> int:
    from workspace_manager.cli.console import make_console
    from workspace_manager.protocol.address import parse_address
    from workspace_manager.supervisor.logs import log_path
    from workspace_manager.supervisor.manager import Manager
    from workspace_manager.supervisor.state import State

    try:
        address = parse_address(args.listen)
    except ValueError as exc:
        targets.fail(f"--listen: {exc}")
    if not address.is_unix and address.target[1] == 0:
        targets.fail("--listen: give a fixed port (a manager must know where to connect)")
    token = _token(args)
    tls = _tls(args)
    health = _health(args)
    workspace, ident = _workspace(args)
    location = workspace.locations[0]
    # One location, never restarted here: restarts are the orchestrator's job.
    supervision = dataclasses.replace(location.supervision, restart="never")
    if args.max_message_mb is not None:
        supervision = dataclasses.replace(supervision, max_message_mb=args.max_message_mb)
    location = dataclasses.replace(location, supervision=supervision)
    workspace = dataclasses.replace(workspace, locations=(location,))
    connect = _self_address(args.listen, address)
    client_ssl = _self_client_context() if tls else None

    def adjust(plan):
        return dataclasses.replace(
            plan,
            listen=args.listen,
            secret=token,
            connect=connect,
            tls=tls,
            client_ssl=client_ssl,
        )

    console = make_console(args.log_format)
    console.width([location.name])
    outcome = {"code": 0, "announced": 0}
    sink = console.sink()
    shown = sink.transition

    manager: Optional[Manager] = None

    def on_transition(name, t):
        shown(name, t)
        if t.new is State.READY and not outcome["announced"]:
            outcome["announced"] = 1  # said once it is true, not before the location loads
            console.message(
                f"serving location {location.name} on {args.listen}" + (" with TLS" if tls else "")
            )
        if t.new in (State.ERROR, State.FAILED) or (
            t.new is State.STOPPED and t.reason != "shut down"
        ):
            outcome["code"] = {State.ERROR: EXIT_LOAD_ERROR, State.FAILED: EXIT_CRASHED}.get(
                t.new, 0
            )
            assert manager is not None
            manager.request_stop()

    sink.transition = on_transition
    manager = Manager(
        workspace,
        f"serve:{args.listen}:{ident}",
        events=sink,
        health=health,
        adjust_plan=adjust,
        build_reporter=console.build_reporter(),
        secret_vars=(args.token_env,) if args.token_env else (),
        frozen_envs=args.frozen_envs,
        build_identity=ident,
    )
    if hasattr(console, "logs_hint"):  # `wsm logs` cannot name a serve's log: its file
        console.logs_hint = lambda name: str(log_path(manager.key, name))
    try:
        asyncio.run(manager.run(serve_control=False))
    except OSError as exc:
        targets.fail(str(exc), code=1)
    return outcome["code"]


def _positive_mb(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0625 <= value <= 4095:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size in MiB from 0.0625 to 4095")
    return value


def _token(args: argparse.Namespace) -> str:
    if args.token_env:
        token = os.environ.get(args.token_env, "")
        if not token:
            targets.fail(f"--token-env: environment variable {args.token_env} is not set")
        return token
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            targets.fail(f"--token-file: cannot read {args.token_file}: {exc.strerror}")
        if not token:
            targets.fail(f"--token-file: {args.token_file} is empty")
        return token
    targets.fail("a token is required: --token-env VAR or --token-file FILE")


def _tls(args: argparse.Namespace) -> Optional[dict]:
    if not args.tls_cert and not args.tls_key:
        return None
    if not (args.tls_cert and args.tls_key):
        targets.fail("--tls-cert and --tls-key go together")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            args.tls_cert, args.tls_key
        )
    except (OSError, ssl.SSLError) as exc:
        targets.fail(f"--tls-cert/--tls-key: {exc}")
    return {"cert": os.path.abspath(args.tls_cert), "key": os.path.abspath(args.tls_key)}


def _health(args: argparse.Namespace):
    if not args.health:
        return None
    from workspace_manager.http.listen import parse_listen

    try:
        return parse_listen(args.health)
    except ValueError as exc:
        targets.fail(f"--health: {exc}")


def _workspace(args: argparse.Namespace):
    if args.workspace and not args.location:
        targets.fail("-w FILE needs the LOCATION to serve")
    if args.location and not args.workspace:
        targets.fail("LOCATION goes with -w FILE")
    workspace, ident = targets.load(args)
    if args.location:
        try:
            location = workspace.location(args.location)
        except KeyError:
            names = ", ".join(loc.name for loc in workspace.locations)
            targets.fail(f"no location {args.location!r} in {args.workspace} (it has: {names})")
        if location.is_remote:
            targets.fail(f"location {args.location!r} is a grpc_server entry: nothing to serve")
        workspace = dataclasses.replace(workspace, locations=(location,))
    return workspace, ident


def _self_address(listen: str, address) -> str:
    """Where `wsm serve` reaches its own child for heartbeats: loopback for a wildcard bind."""
    if address.is_unix:
        return listen
    host, port = address.target
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    elif ":" in host:
        host = f"[{host}]"
    return f"tcp://{host}:{port}"


def _self_client_context() -> ssl.SSLContext:
    """The heartbeat connection to our own child: encrypted, authenticated by the token; the
    certificate is the operator's (maybe for another name), so it is not verified here."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
