"""The package builds anywhere and installs the versions it was tested with.

A wheel is built from the declared build requirement by ``python -m build`` (CI and the
Dockerfile's ``pip wheel``); these tests hold the declarations to what that build and the
installs need.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def constraints() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = Version(version)
    return pins


def test_the_build_requirement_reads_the_license_metadata() -> None:
    """A license expression and license-files need setuptools 77 (PEP 639); 68 fails the build."""
    (requirement,) = (Requirement(r) for r in PYPROJECT["build-system"]["requires"])
    assert requirement.name == "setuptools"
    assert not requirement.specifier.contains("76.9")
    assert requirement.specifier.contains("77.0.3")
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]


def test_the_license_file_is_the_declared_license() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text


def test_runtime_dependencies_have_upper_bounds_and_tested_pins() -> None:
    pins = constraints()
    for line in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(line)
        assert any(spec.operator in ("<", "<=", "~=", "==") for spec in requirement.specifier), line
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in pins, f"{name} is not pinned in constraints.txt (run `make constraints`)"
        assert requirement.specifier.contains(pins[name]), f"the pin of {name} is outside {line}"
    for line in PYPROJECT["project"]["optional-dependencies"]["test"]:
        name = re.sub(r"[-_.]+", "-", Requirement(line).name).lower()
        assert name in pins, f"{name} is not pinned in constraints.txt (run `make constraints`)"


def test_make_and_the_image_install_with_the_constraints() -> None:
    makefile = (ROOT / "Makefile").read_text()
    runtime = re.search(r"^\$\(BIN\)/evergreen:.*?(?=^\S)", makefile, re.MULTILINE | re.DOTALL)
    assert runtime is not None
    assert "-c $(CONSTRAINTS) -e ." in runtime.group(0)
    assert "[test]" not in runtime.group(0), "the runtime install must not pull the test toolchain"
    demo = re.search(r"^demo:(.*)$", makefile, re.MULTILINE)
    assert demo is not None and demo.group(1).split() == ["$(BIN)/evergreen"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--constraint constraints.txt" in dockerfile
    assert re.search(r"^ARG PYTHON_IMAGE=python:[\w.-]+@sha256:[0-9a-f]{64}$", dockerfile, re.MULTILINE)
    dockerignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert {"!LICENSE", "!constraints.txt", "!pyproject.toml", "!README.md"} <= set(dockerignore)
