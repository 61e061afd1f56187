"""The proxy's settings: one model, filled from defaults, files, environment and flags.

Every knob lives here once, with its environment variable derived from its name
(`max_backends` -> `TYPEMUX_LSP_MAX_BACKENDS`), so the CLI, the environment and the
config files cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from .backends import DEFAULT_KIND

ENV_PREFIX = "TYPEMUX_LSP_"


@dataclass(slots=True)
class Settings:
    #: backend kind: pyright, basedpyright, ty or pyrefly
    backend: str = DEFAULT_KIND
    #: most backends alive at once; the least recently used idle one is evicted
    max_backends: int = 8
    #: seconds without client traffic after which a backend is stopped (0 = never)
    backend_ttl: float = 1800.0
    #: seconds index-dependent requests wait for a new backend to be ready (0 = off)
    warmup_timeout: float = 2.0
    #: seconds a backend has to answer initialize
    start_timeout: float = 30.0
    #: log file (default: stderr)
    log_file: str | None = None
    #: log level: trace, debug, info, warning, error
    log_level: str = "info"
    #: publish an informational diagnostic on files that have no .venv
    no_venv_diagnostic: bool = True
    #: command that starts a backend instead of the kind's own (e.g. a wrapper script)
    backend_command: str | None = None
    #: settings every backend gets in its `workspace/configuration` answers
    backend_settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def env_var(name: str) -> str:
    return ENV_PREFIX + name.upper()
