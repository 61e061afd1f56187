"""Which Python environment answers for a file: `.venv`, PEP 832, uv workspaces, Poetry,
PDM, Hatch, pixi, conda, Pipenv and PEP 723 scripts.

`find_environment(path, roots=..., rules=...)` walks up from the file as the client spells
it to its project (`project.py` says what a project is), asks the locators in
`locators/` in order, and returns a `Lookup`: the `Environment`, or why there is none
(`Lookup.missing`, the strict error with the fix). Nothing a repository contains is run to
find it; the only program ever run is uv, for PEP 723 scripts (see `locators/pep723.py`).
docs/environments.md describes each manager's rule for users.
"""

from ._fs import absolute, canonical, path_outside
from .finder import (
    clear_cache,
    fallback_environment,
    find_environment,
    git_toplevel,
    no_environment_message,
    project_dir_hint,
    uri_to_path,
)
from .locators import LOCATORS, Locator
from .model import Environment, Lookup, Missing, is_environment
from .project import Context, EnvironmentRule, Project, is_project

__all__ = [
    "LOCATORS",
    "Context",
    "Environment",
    "EnvironmentRule",
    "Locator",
    "Lookup",
    "Missing",
    "Project",
    "absolute",
    "canonical",
    "clear_cache",
    "fallback_environment",
    "find_environment",
    "git_toplevel",
    "is_environment",
    "is_project",
    "no_environment_message",
    "path_outside",
    "project_dir_hint",
    "uri_to_path",
]
