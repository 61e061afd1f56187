"""The locators, in the order they are asked: the first that answers wins.

A locator is one small module with a `LOCATOR`: a function from a `Context` (the file, its
project, the disk) to an `Environment`, a `Missing` (the project declares an environment that
is not there), or None (not this locator's kind of project). To support another manager, add
a module here, put its `LOCATOR` in `LOCATORS` where it belongs, and add a test to
tests/unit/test_environments_locators.py.

Order (docs/environments.md explains each step):

1. explicit: a typemux-lsp rule's `environment` wins over everything;
2. pep723: a script with an inline `# /// script` block has an environment of its own;
3. uv: a uv workspace member uses the workspace's environment (before `.venv`, so a stale
   member `.venv` never wins);
4. dotvenv: a `.venv` directory, symlink or PEP 832 redirect file;
5. pixi, poetry, pdm, hatch, conda, pipenv: where each manager keeps it;
6. editable: an enclosing project's environment that has this project installed in
   editable mode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..model import Environment, Missing
from ..project import Context

Found = Environment | Missing | None


@dataclass(frozen=True, slots=True)
class Locator:
    #: the manager it knows (also `Environment.manager` of what it finds)
    manager: str
    locate: Callable[[Context], Found]
    #: False: asked even for a file outside any project (a PEP 723 script)
    needs_project: bool = True


def _registry() -> tuple[Locator, ...]:
    from . import conda, dotvenv, editable, explicit, hatch, pdm, pep723, pipenv, pixi, poetry, uv

    return (
        explicit.LOCATOR,
        pep723.LOCATOR,
        uv.LOCATOR,
        dotvenv.LOCATOR,
        pixi.LOCATOR,
        poetry.LOCATOR,
        pdm.LOCATOR,
        hatch.LOCATOR,
        conda.LOCATOR,
        pipenv.LOCATOR,
        editable.LOCATOR,
    )


LOCATORS: tuple[Locator, ...] = _registry()
