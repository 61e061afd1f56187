"""conda / mamba: `environment.yml` names the environment, `envs_dirs` say where it is.

`prefix:` in environment.yml is the environment itself; `name:` is looked up in the
environment directories, in conda's order: `CONDA_ENVS_PATH` (or `CONDA_ENVS_DIRS`), the
`envs_dirs` of the `.condarc` files (the user's first), then each installation's `envs/`
(`CONDA_ROOT`, `MAMBA_ROOT_PREFIX`, the installation `CONDA_EXE` belongs to, the usual install
locations) and `~/.conda/envs`. The first directory holding `<name>/conda-meta` wins, as with
`conda activate <name>`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..model import Missing
from ..project import Context
from . import Found, Locator

SPEC_FILES = ("environment.yml", "environment.yaml")
#: where conda, miniforge, mamba and micromamba are usually installed, below home or /opt
_INSTALLS = ("miniforge3", "miniconda3", "anaconda3", "mambaforge", "micromamba", "conda")


def locate(ctx: Context) -> Found:
    project = ctx.project
    if project is None:
        return None
    spec_name = next((n for n in SPEC_FILES if project.has(n)), None)
    if spec_name is None:
        return None
    directory = project.directory
    spec_file = directory / spec_name
    spec = read_yaml(ctx, spec_file)
    fix = f"`cd {directory} && conda env create -f {spec_name}` (or mamba / micromamba)"
    if spec is None:
        return Missing(
            "conda", directory, f"{spec_file} is not valid YAML", (spec_file,), fix, final=False
        )
    looked: list[Path] = []
    prefix = spec.get("prefix")
    if isinstance(prefix, str) and prefix.strip():
        target = ctx.expand(prefix.strip(), directory)
        looked.append(target)
        found = ctx.environment(target, directory, "conda", f"prefix: in {spec_file}")
        if found is not None:
            return found
    name = spec.get("name")
    if isinstance(name, str | int) and str(name).strip():
        env_name = str(name).strip()
        for envs_dir in envs_dirs(ctx):
            target = envs_dir / env_name
            looked.append(target)
            found = ctx.environment(
                target, directory, "conda", f"name: {env_name} in {spec_file}, in {envs_dir}"
            )
            if found is not None:
                return found
    if not looked:
        return Missing(
            "conda",
            directory,
            f"{spec_file} names no environment (it has neither name: nor prefix:)",
            (spec_file,),
            f"add `name: <environment>` to {spec_file}, then {fix}",
            final=False,
        )
    return Missing(
        "conda",
        directory,
        f"it is a conda project ({spec_name}) and its environment does not exist",
        tuple(looked),
        fix,
        final=False,
    )


def read_yaml(ctx: Context, path: Path) -> Mapping[str, Any] | None:
    """The YAML mapping in `path` ({} when absent or empty), None when it is not valid."""
    text = ctx.seen.read_text(path)
    if text is None:
        return {}
    import yaml  # only conda projects pay for the import

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if data is None:
        return {}
    return data if isinstance(data, Mapping) else None


def envs_dirs(ctx: Context) -> Iterator[Path]:
    seen: set[Path] = set()

    def fresh(path: Path) -> bool:
        if path in seen:
            return False
        seen.add(path)
        return True

    for var in ("CONDA_ENVS_PATH", "CONDA_ENVS_DIRS"):
        for raw in ctx.environ.get(var, "").split(os.pathsep):
            if raw.strip() and fresh(path := ctx.expand(raw.strip())):
                yield path
    for rc_file in _condarc_files(ctx):
        rc = read_yaml(ctx, rc_file) or {}
        dirs = rc.get("envs_dirs")
        for raw in dirs if isinstance(dirs, list) else []:
            if isinstance(raw, str) and fresh(path := ctx.expand(raw)):
                yield path
    for root in _roots(ctx):
        if fresh(path := root / "envs"):
            yield path
    if fresh(path := ctx.home / ".conda" / "envs"):
        yield path


def _condarc_files(ctx: Context) -> Iterator[Path]:
    """The .condarc files, the most specific first (conda merges their envs_dirs)."""
    if ctx.environ.get("CONDARC"):
        yield ctx.expand(ctx.environ["CONDARC"])
    home = ctx.home
    yield from (home / ".condarc", home / ".conda" / "condarc", home / ".conda" / ".condarc")
    config = ctx.expand(ctx.environ.get("XDG_CONFIG_HOME") or "~/.config") / "conda"
    yield from (config / "condarc", config / ".condarc")
    if ctx.environ.get("CONDA_ROOT"):
        root = ctx.expand(ctx.environ["CONDA_ROOT"])
        yield from (root / "condarc", root / ".condarc")
    yield from (Path("/etc/conda/condarc"), Path("/etc/conda/.condarc"))


def _roots(ctx: Context) -> Iterator[Path]:
    for var in ("CONDA_ROOT", "MAMBA_ROOT_PREFIX"):
        if ctx.environ.get(var):
            yield ctx.expand(ctx.environ[var])
    for var in ("CONDA_EXE", "MAMBA_EXE"):
        exe = ctx.environ.get(var)
        if exe:  # <root>/bin/conda or <root>/condabin/conda
            yield ctx.expand(exe).parent.parent
    for name in _INSTALLS:
        yield ctx.home / name
        yield Path("/opt") / name
    yield ctx.home / ".local" / "share" / "mamba"


LOCATOR = Locator("conda", locate)
