"""Command line: serve LSP on stdio (the default), `demo`, and `--doctor`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .backends import KINDS
from .config import Settings, env_var

TRACE = 5
logging.addLevelName(TRACE, "TRACE")


def _float(value: str) -> float:
    number = float(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="typemux-lsp",
        description=(
            "A Python language server that runs one type checker per .venv and routes every "
            "file to its own. Speaks LSP on stdin/stdout. `typemux-lsp demo [DIR]` runs the demo."
        ),
    )
    parser.add_argument("--version", action="version", version=f"typemux-lsp {__version__}")
    parser.add_argument(
        "--backend", choices=sorted(KINDS), help=f"type checker to run [{env_var('backend')}]"
    )
    parser.add_argument(
        "--max-backends",
        type=_positive_int,
        help=f"most backends alive [{env_var('max_backends')}]",
    )
    parser.add_argument(
        "--backend-ttl",
        type=_float,
        help=f"idle seconds before a backend stops, 0 = never [{env_var('backend_ttl')}]",
    )
    parser.add_argument(
        "--warmup-timeout",
        type=_float,
        help="seconds index-dependent requests wait for a new backend, 0 = off "
        f"[{env_var('warmup_timeout')}]",
    )
    parser.add_argument(
        "--start-timeout",
        type=_float,
        help=f"seconds a backend has to answer initialize [{env_var('start_timeout')}]",
    )
    parser.add_argument(
        "--log-file", help=f"log to this file instead of stderr [{env_var('log_file')}]"
    )
    parser.add_argument(
        "--log-level",
        choices=["trace", "debug", "info", "warning", "error"],
        help=f"[{env_var('log_level')}]",
    )
    parser.add_argument("--stdio", action="store_true", help="accepted for editors that pass it")
    return parser


def settings_from(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Settings:
    """Defaults, then `TYPEMUX_LSP_*` variables, then flags."""
    env = os.environ if environ is None else environ
    settings = Settings()
    for name in Settings.names():
        default = getattr(settings, name)
        raw = env.get(env_var(name))
        if raw is not None and raw != "" and not isinstance(default, dict):
            setattr(settings, name, _coerce(name, raw, default))
        flag = getattr(args, name, None)
        if flag is not None:
            setattr(settings, name, flag)
    if settings.backend not in KINDS:
        raise SystemExit(
            f"typemux-lsp: unknown backend {settings.backend!r} (from {env_var('backend')}); "
            f"choose one of {', '.join(sorted(KINDS))}."
        )
    return settings


def _coerce(name: str, raw: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        raise SystemExit(
            f"typemux-lsp: {env_var(name)}={raw!r} is not a number; unset it or fix its value."
        ) from None
    return raw


def setup_logging(settings: Settings) -> None:
    level = TRACE if settings.log_level == "trace" else getattr(logging, settings.log_level.upper())
    handler: logging.Handler
    if settings.log_file:
        from logging.handlers import RotatingFileHandler

        handler = RotatingFileHandler(settings.log_file, maxBytes=10 * 1024 * 1024, backupCount=2)
    else:
        handler = logging.StreamHandler(sys.stderr)  # never stdout: that is the LSP channel
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pygls").setLevel(max(level, logging.WARNING))
    logging.getLogger("asyncio").setLevel(max(level, logging.WARNING))


def serve(settings: Settings) -> int:
    from .server import TypemuxServer

    server = TypemuxServer(settings)
    return asyncio.run(server.serve())


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["demo"]:
        from .demo import main as demo_main

        code: int = demo_main(args_list[1:])
        return code
    args = build_parser().parse_args(args_list)
    settings = settings_from(args)
    setup_logging(settings)
    return serve(settings)
