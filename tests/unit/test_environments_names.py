"""Environment names computed as the tools compute them, against vectors the tools produced.

Poetry's first two vectors are published by Microsoft's python-environment-tools
(pet-poetry/src/environment_locations.rs tests); every other vector was produced by the tool's
own code (poetry 2.5.1 `EnvManager.generate_env_name`, pipenv 2026.10.3 `VenvLocator`, hatch
1.18.2 `Path.id`, pdm 2.29.4 `get_venv_prefix`), the ones on /tmp/tt confirmed end to end by
`poetry env info --path`, `pipenv --venv`, `hatch env find` and `pdm venv create`. The paths
need not exist: each function takes the real path the tool would hash.
"""

from __future__ import annotations

import pytest

from typemux_lsp.environments.names import (
    hatch_project_id,
    pdm_env_prefix,
    pipenv_env_name,
    poetry_env_name,
)


@pytest.mark.parametrize(
    ("name", "directory", "expected"),
    [
        (
            "poetry-demo",
            "/Users/donjayamanne/temp/poetry-sample1/poetry-demo",
            "poetry-demo-gNT2WXAV",
        ),
        (
            "new-project",
            "/Users/donjayamanne/temp/POETRY-UPPER/new-PROJECT",
            "new-project-TbBV0MKD",
        ),
        ("Poet_Demo", "/tmp/tt/poet", "poet-demo-BqEcLDil"),
        ("my.Weird name!$`*@x", "/srv/a b/ü/proj", "my-weird_name_____x-rj3RcaZQ"),
        ("x" * 60, "/p", "x" * 42 + "-ANdLrxTq"),
    ],
)
def test_poetry(name: str, directory: str, expected: str) -> None:
    assert poetry_env_name(name, directory) == expected


@pytest.mark.parametrize(
    ("directory", "expected"),
    [
        ("/tmp/tt/Pip_Proj", "Pip_Proj-Ee7KkTcq"),
        ("/srv/My Project (2) [x]", "My_Project__2___x_-KHzJXsyk"),
        ("/p/" + "y" * 50, "y" * 42 + "-dcucWKdh"),
    ],
)
def test_pipenv(directory: str, expected: str) -> None:
    assert pipenv_env_name(directory) == expected


def test_pipenv_custom_name_and_python_suffix() -> None:
    assert pipenv_env_name("/tmp/tt/Pip_Proj", custom="mine") == "mine"
    assert pipenv_env_name("/tmp/tt/Pip_Proj", python="3.12") == "Pip_Proj-Ee7KkTcq-3.12"
    assert pipenv_env_name("/tmp/tt/Pip_Proj", python="/usr/bin/python3") == (
        "Pip_Proj-Ee7KkTcq-python3"
    )


@pytest.mark.parametrize(
    ("directory", "expected"), [("/tmp/tt/hat", "E_zD16Ml"), ("/srv/Ünï", "zmhOybtO")]
)
def test_hatch(directory: str, expected: str) -> None:
    assert hatch_project_id(directory) == expected


@pytest.mark.parametrize(
    ("directory", "expected"), [("/tmp/tt/pdmp", "pdmp-ImP6h1qo-"), ("/srv/a b", "a b-VXpcm0sW-")]
)
def test_pdm(directory: str, expected: str) -> None:
    assert pdm_env_prefix(directory) == expected
