"""The proxy's settings: one model, filled from defaults, config files, environment and flags.

Precedence, field by field: flag > environment (`TYPEMUX_LSP_<FIELD>`) > project config
(`[tool.typemux-lsp]` in the pyproject.toml at the git toplevel of the working directory) >
user config (`config.toml` in the user config directory, or `--config` / `TYPEMUX_LSP_CONFIG`) >
default. A field's value always comes from exactly one level (lists and tables are replaced,
not merged), so `--doctor` can name one source per field.

A configuration mistake never stops the proxy: an invalid value is reported as a
`ConfigProblem` (file, line, what is wrong, how to fix it) and the field falls back to the next
level. An editor that cannot start its language server shows nothing at all, which is worse
than running with a default and saying why.

Two fields cannot come from a project's pyproject.toml: `backend-command` and `log-file`.
Opening a repository must not make typemux-lsp run a program or write a file the repository
chooses (the same rule that keeps backends out of a project's `.venv/bin`).

The parts, by concept:

- `settings`: the model (every field, its type and bounds, its flag/variable/key spelling);
- `sources`: the levels and their precedence (files, environment, flags), each value's source;
- `rules`: project rules (`[[tool.typemux-lsp.projects]]`) and their checks;
- `problems`: what a configuration mistake is, and how values are written about;
- `positions`, `values`: the line of a TOML key; a decoded value checked into its type.
"""

from .positions import KeyLines, syntax_error_position
from .problems import ConfigProblem, problems_summary
from .rules import ProjectRule
from .settings import (
    ENV_PREFIX,
    EVENT_LOOPS,
    LOG_LEVELS,
    Settings,
    env_var,
    flag,
    flag_type,
    toml_key,
)
from .sources import (
    CONFIG_ENV,
    CONFIG_FILE,
    PROJECT_FILE,
    PROJECT_TABLE,
    ConfigFile,
    LoadedSettings,
    default_config_path,
    load_settings,
)

__all__ = [
    "CONFIG_ENV",
    "CONFIG_FILE",
    "ENV_PREFIX",
    "EVENT_LOOPS",
    "LOG_LEVELS",
    "PROJECT_FILE",
    "PROJECT_TABLE",
    "ConfigFile",
    "ConfigProblem",
    "KeyLines",
    "LoadedSettings",
    "ProjectRule",
    "Settings",
    "default_config_path",
    "env_var",
    "flag",
    "flag_type",
    "load_settings",
    "problems_summary",
    "syntax_error_position",
    "toml_key",
]
