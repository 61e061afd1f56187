"""Command line: serve LSP on stdio (the default), `demo`, and `--doctor`.

Every setting has a flag here, an environment variable and a TOML key (see config.py); the
parser only turns text into values, `config.load_settings` decides which level wins.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import LAUNCHED, __version__
from .backends import KINDS
from .config import (
    CONFIG_ENV,
    EVENT_LOOPS,
    LOG_LEVELS,
    ConfigProblem,
    LoadedSettings,
    Settings,
    default_config_path,
    env_var,
    flag_type,
    load_settings,
)
from .jsonrpc import TRACE

logger = logging.getLogger("typemux_lsp")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="typemux-lsp",
        description=(
            "A Python language server that runs one type checker per .venv and routes every "
            "file to its own. Speaks LSP on stdin/stdout. `typemux-lsp demo [DIR]` runs the demo; "
            "`typemux-lsp --doctor [PATH]` checks a setup."
        ),
        epilog=(
            "Each setting is taken from, in order: its flag, its TYPEMUX_LSP_* variable, "
            "[tool.typemux-lsp] in the pyproject.toml at the git toplevel, the user config "
            f"({default_config_path()}), the default. See docs/configuration.md."
        ),
    )
    parser.add_argument("--version", action="version", version=f"typemux-lsp {__version__}")
    group = parser.add_argument_group("settings")

    def setting(name: str, help: str, **kwargs: Any) -> None:
        group.add_argument(
            "--" + name.replace("_", "-"), dest=name, help=f"{help} [{env_var(name)}]", **kwargs
        )

    setting(
        "backend",
        "type checker to run; auto (the default): the one installed when only one is, else pyright",
        choices=["auto", *sorted(KINDS)],
    )
    setting(
        "max_backends", "most backends alive at once", type=flag_type("max_backends"), metavar="N"
    )
    setting(
        "backend_sharing",
        'kinds that serve several environments from one process: "auto", "all", "none" or '
        "kinds separated by commas",
        type=flag_type("backend_sharing"),
        metavar="KINDS",
    )
    setting(
        "max_backend_memory",
        "MiB of backends' memory past which the least recently used project is evicted, 0 = no "
        "budget",
        type=flag_type("max_backend_memory"),
        metavar="MIB",
    )
    setting(
        "backend_ttl",
        "idle seconds before a backend stops, 0 = never",
        type=flag_type("backend_ttl"),
        metavar="S",
    )
    setting(
        "warmup_timeout",
        "seconds index-dependent requests wait for a new backend, 0 = off",
        type=flag_type("warmup_timeout"),
        metavar="S",
    )
    setting(
        "start_timeout",
        "seconds a backend has to answer initialize",
        type=flag_type("start_timeout"),
        metavar="S",
    )
    setting(
        "request_timeout",
        "seconds a backend has to answer a request, 0 = no deadline",
        type=flag_type("request_timeout"),
        metavar="S",
    )
    setting(
        "freshness",
        "follow the disk: watch each backend's environment, sources and configs (true/false)",
        type=flag_type("freshness"),
        metavar="BOOL",
    )
    setting(
        "freshness_debounce_ms",
        "ms the disk must stay quiet before changes are acted on",
        type=flag_type("freshness_debounce_ms"),
        metavar="MS",
    )
    setting("log_file", "log to this file instead of stderr", metavar="PATH")
    setting("log_level", "log level; trace shows message bodies", choices=list(LOG_LEVELS))
    setting(
        "event_loop",
        "auto: uvloop when installed (pip install 'typemux-lsp[fast]'), else asyncio",
        choices=list(EVENT_LOOPS),
    )
    setting(
        "no_venv_diagnostic",
        "publish a diagnostic on files that have no .venv (true/false)",
        type=flag_type("no_venv_diagnostic"),
        metavar="BOOL",
    )
    setting(
        "backend_command",
        "command that starts every backend instead of the kind's own",
        metavar="CMD",
    )
    setting(
        "backend_settings",
        "JSON object every backend gets in its workspace/configuration answers",
        type=flag_type("backend_settings"),
        metavar="JSON",
    )
    setting(
        "projects",
        'JSON array of per-project rules, e.g. [{"path": "legacy/*", "backend": "pyright"}]',
        type=flag_type("projects"),
        metavar="JSON",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help=f"user config file instead of {default_config_path()} [{CONFIG_ENV}]",
    )
    parser.add_argument(
        "--doctor",
        action="store_true",
        help="check the setup for PATH (default: the working directory) and exit: 0 when it "
        "can work, 2 when it cannot",
    )
    parser.add_argument(
        "--json", action="store_true", help="with --doctor: print JSON (docs/doctor-json.md)"
    )
    parser.add_argument("path", nargs="?", metavar="PATH", help="with --doctor: what to check")
    parser.add_argument("--stdio", action="store_true", help="accepted for editors that pass it")
    return parser


def setup_logging(settings: Settings) -> ConfigProblem | None:
    """Log to the configured file, or stderr (never stdout: that is the LSP channel).

    A log file that cannot be opened must not stop the server: it logs to stderr instead and
    the failure is returned as a problem to report.
    """
    level = TRACE if settings.log_level == "trace" else getattr(logging, settings.log_level.upper())
    handler: logging.Handler = logging.StreamHandler(sys.stderr)
    problem = None
    if settings.log_file:
        from logging.handlers import RotatingFileHandler

        path = os.path.expanduser(settings.log_file)
        try:
            handler = RotatingFileHandler(path, maxBytes=10 * 1024 * 1024, backupCount=2)
        except OSError as error:
            problem = ConfigProblem(
                None,
                None,
                f"log-file {path} cannot be opened ({error.strerror or error}); logging to "
                "stderr instead.",
                "create its directory or choose a writable path.",
            )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pygls").setLevel(max(level, logging.WARNING))
    logging.getLogger("asyncio").setLevel(max(level, logging.WARNING))
    return problem


def serve(loaded: LoadedSettings) -> int:
    # Before the server's imports: a backend never asked before boots while they run.
    from .capabilities import Answers, prestart

    probe = prestart(KINDS[loaded.settings.backend], Path.cwd(), Answers.default())
    from .server import TypemuxServer

    server = TypemuxServer(
        loaded.settings, problems=loaded.problems, probe=probe, launched=LAUNCHED
    )
    with asyncio.Runner(loop_factory=loop_factory(loaded.settings.event_loop)) as runner:
        return runner.run(server.serve())


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed: it cuts the event loop's cost per relayed message
    (bench/relay.py measures both)."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            logging.getLogger(__name__).warning(
                "event-loop = uvloop, but uvloop is not installed: using asyncio. "
                "Fix: pip install 'typemux-lsp[fast]'"
            )
        return None
    return uvloop.new_event_loop


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["demo"]:
        from .demo import main as demo_main

        code: int = demo_main(args_list[1:])
        return code
    parser = build_parser()
    args = parser.parse_args(args_list)
    if not args.doctor and (args.path is not None or args.json):
        parser.error("PATH and --json are only used with --doctor")
    if args.doctor:
        from .doctor import run

        return run(args, os.environ, Path(args.path) if args.path else Path.cwd())
    loaded = load_settings(args, os.environ, Path.cwd())
    failed_log = setup_logging(loaded.settings)
    if failed_log is not None:
        loaded.problems.append(failed_log)
    for problem in loaded.problems:
        logger.warning("configuration: %s", problem)
    return serve(loaded)
