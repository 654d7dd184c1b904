"""`smsgw serve` and friends: a thin layer over Gateway."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from .config import PORTS, PORTS_EXPECTED, ConfigError, load_config
from .gctune import tune_for_serving
from .logs import configure_logging


def main(argv: list[str] | None = None) -> int:
    standard_streams_open()
    parser = argparse.ArgumentParser(prog="smsgw", description="SMS/USSD short-code gateway and handset simulator")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway (SMPP server + HTTP)")
    serve.add_argument("--config", help="TOML config file (default: config/default.toml)")
    serve.add_argument("--db", type=file_name, help="SQLite database file (default: gateway.database from the config)")
    # The config decides the defaults: a site's config with other ports must not be contradicted by --help.
    serve.add_argument("--smpp-port", type=port, help="SMPP port (default: the config's gateway.smpp_port, 2775 in the "
                                                      "default config)")  # fmt: skip
    serve.add_argument("--http-port", type=port, help="HTTP port (default: the config's gateway.http_port, 8775 in the "
                                                      "default config)")  # fmt: skip
    serve.add_argument("--host", help="address to listen on for SMPP and HTTP, \"\" every interface (default: the "
                                      "config's gateway.smpp_host and gateway.http_host, 0.0.0.0 in the default "
                                      "config)")  # fmt: skip
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-json", action="store_true", default=None, help="JSON log lines even on a terminal")
    from simulator import cli as simulator_cli

    simulate = commands.add_parser("simulate", help="run the handset simulator fleet against an SMPP server",
                                   description=simulator_cli.__doc__.split("\n\n")[0])  # fmt: skip
    simulator_cli.add_arguments(simulate)
    args = parser.parse_args(argv)
    if args.command == "simulate":
        return simulator_cli.run_args(args)
    configure_logging(args.log_level, args.log_json)
    if args.command == "serve":
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            print(f"smsgw: bad config: {exc}", file=sys.stderr)
            return 2
        return _run(serve_forever(config, args))
    return 2


def standard_streams_open() -> None:
    """A standard stream started closed (`2>&-`): Python leaves sys.stderr None (logging failed on it, exit 1 and not a
    word), and the next file opened takes its descriptor, the database's or a socket's, where a line or the writer
    process's traceback would then go. /dev/null takes its place: what is written there is lost, as with a reader gone."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest descriptor free: this one (the ones before it are open)
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False))  # noqa: SIM115 (for the process's life)


def port(text: str) -> int:
    """A port as the config file takes it: the OS would wrap 68467 to 2931 and call -1 "Servname not supported"."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value not in PORTS:
        raise argparse.ArgumentTypeError(f"expected {PORTS_EXPECTED}; got {text!r}")
    return value


def file_name(text: str) -> str:
    """A file's name; an empty one was ignored, and the config's database used instead."""
    if not text:
        raise argparse.ArgumentTypeError("expected a file name; got ''")
    return text


def _run(coro) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def stop_signals() -> list[signal.Signals]:
    """The signals that stop the gateway (drained, logged): SIGTERM, SIGINT (Ctrl-C) and SIGHUP (the terminal it runs
    on closed, or kill -HUP), which killed it at once: no drain, no line, the deliver_sm in flight sent again at the
    next start. Not SIGHUP if it is ignored already: started under nohup, the terminal's closing is not for it."""
    signals = [signal.SIGTERM, signal.SIGINT]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signals.append(signal.SIGHUP)
    return signals


async def serve_forever(config, args: argparse.Namespace) -> int:
    from .app import Gateway
    from .open_files import raise_limit
    from .store.base import StoreOpenError

    raise_limit()  # a connection each: the usual soft limit of 1024 is some nine hundred binds

    try:
        gateway = Gateway(config, db_path=args.db, smpp_port=args.smpp_port, http_port=args.http_port, host=args.host)
    except ConfigError as exc:
        print(f"smsgw: bad config: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in stop_signals():
        loop.add_signal_handler(sig, stop.set)
    try:
        await gateway.start()
    except ConfigError as exc:
        print(f"smsgw: bad config: {exc}", file=sys.stderr)
        await gateway.stop()
        return 2
    except (OSError, StoreOpenError) as exc:  # a port in use, a database that is not one
        change = gateway.store.schema_change()  # (a port in use: after the store opened, and maybe upgraded it)
        print(f"smsgw: cannot start: {exc}" + (f" ({change} first)" if change else ""), file=sys.stderr)
        await gateway.stop()
        return 1
    tune_for_serving()  # see gctune: the collector is a third of a busy gateway's CPU otherwise
    await stop.wait()
    return 0 if await gateway.stop() else 1  # (1: MTs answered whose final status could not be committed)
