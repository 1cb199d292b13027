"""Import boundaries between the parts, and the pinned versions the issue requires."""

from __future__ import annotations

import importlib.metadata
import json
import re
import tomllib

import pytest

from fixtures import REPO, run_python

# Imports every module of the given packages in a fresh interpreter and reports what got loaded.
PROBE = """
import importlib, json, pkgutil, sys
imported = []
for package in sys.argv[1].split(","):
    module = importlib.import_module(package)
    imported.append(package)
    for info in pkgutil.walk_packages(getattr(module, "__path__", []), package + "."):
        importlib.import_module(info.name)
        imported.append(info.name)
print(json.dumps({"imported": imported, "loaded": sorted({name.split(".")[0] for name in sys.modules})}))
"""


def probe(*packages: str) -> dict:
    done = run_python("-c", PROBE, ",".join(packages), timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_gateway_never_imports_torch():
    result = probe("gateway")
    assert {"gateway.app", "gateway.orchestrator.local", "gateway.services.predictions", "gateway.predictor_client"} <= set(result["imported"])
    assert "torch" not in result["loaded"]
    assert "kserve" not in result["loaded"]


def test_the_core_modules_the_gateway_uses_never_import_torch():
    modules = ["tscore.labelconfig", "tscore.series", "tscore.labels", "tscore.segments", "tscore.artifacts", "tscore.fetch", "tscore.projects", "tscore.errors", "tscore.settings", "tscore.windows"]
    result = probe(*modules)
    assert "torch" not in result["loaded"]


def test_the_predictor_never_imports_label_studio():
    result = probe("predictor")
    assert {"predictor.model", "predictor.repository", "predictor.__main__"} <= set(result["imported"])
    assert "label_studio_sdk" not in result["loaded"]
    assert "trainer" not in result["loaded"]
    assert "gateway" not in result["loaded"]


def requirements() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {}
    for requirement in project["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==([A-Za-z0-9_.+\-]+)", requirement.strip())
        assert match, f"{requirement!r} is not pinned with =="
        pins[match.group(1).split("[")[0].lower()] = match.group(2)
    return pins


def test_pyproject_pins_the_required_versions():
    pins = requirements()
    assert pins["torch"] == "2.13.0"
    assert pins["kserve"] == "0.21.0"
    assert pins["kubernetes"] == "37.0.1"
    assert {"fastapi", "pandas", "numpy", "label-studio-sdk", "pydantic-settings", "prometheus-client"} <= set(pins)


@pytest.mark.parametrize("name", ["torch", "kserve", "kubernetes", "label-studio-sdk", "fastapi"])
def test_the_environment_matches_the_pins(name):
    installed = importlib.metadata.version(name)
    assert installed.split("+")[0] == requirements()[name]
