"""Static checks of the Dockerfile, .dockerignore and the kind tooling in k8s/.

No Docker engine or kind is needed: the Dockerfile is parsed, the YAML files are loaded and
rendered with the chart, and the scripts are syntax-checked and run far enough to prove they
refuse to start without their tools.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib

import pytest
import yaml

from charts.chartutil import REPO_ROOT, containers, load_chart, one, render

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
K8S = REPO_ROOT / "k8s"
SCRIPTS = ["kind-up.sh", "kind-e2e.sh", "kind-down.sh"]
REQUIRED_TOOLS = {
    "kind-up.sh": ["docker", "kind", "helm", "kubectl"],
    "kind-e2e.sh": ["kubectl"],
    "kind-down.sh": ["docker", "kind"],
}


# --------------------------------------------------------------------------- Dockerfile parsing


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """``[(INSTRUCTION, arguments)]`` of a Dockerfile: comments dropped, continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            keyword, _, rest = full.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """The instructions split into build stages (each starts with its FROM)."""
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions:
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def global_args(instructions: list[tuple[str, str]]) -> dict[str, str]:
    """ARGs declared before the first FROM, with their defaults."""
    args: dict[str, str] = {}
    for keyword, rest in instructions:
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            args[name] = default
    return args


def stage_args(stage: list[tuple[str, str]]) -> dict[str, str]:
    """ARGs of one stage with their defaults ("" when none)."""
    args = {}
    for keyword, rest in stage:
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
    return args


def run_commands(stage: list[tuple[str, str]]) -> list[str]:
    """The RUN commands of one stage."""
    return [rest for keyword, rest in stage if keyword == "RUN"]


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    """The repository Dockerfile, parsed."""
    return dockerfile_instructions(DOCKERFILE.read_text())


def test_parser_joins_continuations_and_skips_comments():
    parsed = dockerfile_instructions("# c\nFROM a AS b\nRUN x \\\n  # inner\n  && y\nUSER 1\n")
    assert parsed == [("FROM", "a AS b"), ("RUN", "x  && y"), ("USER", "1")]


def test_dockerfile_is_multi_stage(instructions):
    all_stages = stages(instructions)
    assert len(all_stages) >= 2
    first_from = all_stages[0][0][1].split()
    assert first_from[-2:] == ["AS", "builder"]
    copies = [rest for keyword, rest in all_stages[-1] if keyword == "COPY"]
    assert any(c.startswith("--from=builder ") and "/opt/venv" in c for c in copies)
    assert not any("pip install" in cmd for cmd in run_commands(all_stages[-1])), "build in the builder stage only"


def test_final_stage_is_python_3_11_slim(instructions):
    final_from = stages(instructions)[-1][0][1].split()[0]
    resolved = re.sub(r"\$\{(\w+)\}", lambda m: global_args(instructions)[m.group(1)], final_from)
    assert resolved == "python:3.11-slim"


def test_builder_installs_torch_from_the_variant_index_before_the_project(instructions):
    builder = stages(instructions)[0]
    args = stage_args(builder)
    assert args["TORCH_VARIANT"] == "cpu"
    runs = run_commands(builder)
    torch_step = next(i for i, cmd in enumerate(runs) if "torch==" in cmd)
    project_step = next(i for i, cmd in enumerate(runs) if re.search(r"pip install \.(\s|$)", cmd))
    assert torch_step < project_step
    assert '--index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}"' in runs[torch_step]


def test_torch_version_matches_the_pyproject_pin(instructions):
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    [pin] = [d for d in pyproject["project"]["dependencies"] if re.match(r"torch\s*==", d)]
    assert stage_args(stages(instructions)[0])["TORCH_VERSION"] == pin.split("==")[1].strip()


def test_runtime_runs_as_non_root_uid_10001(instructions):
    final = stages(instructions)[-1]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users, "the final stage must switch to a non-root USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) == 10001  # numeric, so runAsNonRoot can verify it
    assert any("useradd" in cmd and "--uid 10001" in cmd for cmd in run_commands(final))
    # the chart runs every pod as that user
    assert load_chart().values["podSecurityContext"]["runAsUser"] == 10001


def test_runtime_entry_point_workdir_and_ports(instructions):
    final = stages(instructions)[-1]
    by_keyword = {keyword: rest for keyword, rest in final}
    assert by_keyword["WORKDIR"] == "/app"
    assert yaml.safe_load(by_keyword["ENTRYPOINT"]) == ["python", "-m"]
    assert yaml.safe_load(by_keyword["CMD"]) == ["gateway"]
    assert set(by_keyword["EXPOSE"].split()) == {"9090", "8080"}


def test_dockerignore_keeps_the_context_small_but_buildable():
    entries = {line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "tests", "charts", "k8s"} <= entries
    needed = {"pyproject.toml", "README.md", "gateway", "predictor", "trainer", "tscore"}
    assert not needed & entries


# --------------------------------------------------------------------------- k8s/ YAML


def test_kind_config():
    config = yaml.safe_load((K8S / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    [node] = config["nodes"]
    match = re.fullmatch(r"kindest/node:v(\d+)\.(\d+)\.(\d+)(@sha256:[0-9a-f]{64})?", node["image"])
    assert match, node["image"]
    assert (int(match.group(1)), int(match.group(2))) >= (1, 32)
    mappings = {m["containerPort"]: m for m in node["extraPortMappings"]}
    assert mappings[80]["hostPort"] == 9090
    assert any("ingress-ready=true" in patch for patch in node["kubeadmConfigPatches"])


def test_kind_values_render_with_the_chart():
    values = yaml.safe_load((K8S / "kind-values.yaml").read_text())
    load_chart().validate_schema(values)
    objects = render(values)
    ingress = one(objects, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    gateway = containers(one(objects, "Deployment")["spec"]["template"]["spec"])["gateway"]
    assert gateway["image"] == "ts-segmenter:dev" and gateway["imagePullPolicy"] == "Never"


def test_kind_up_builds_loads_and_installs_what_the_values_expect():
    script = (K8S / "kind-up.sh").read_text()
    values = yaml.safe_load((K8S / "kind-values.yaml").read_text())
    assert f'IMAGE_REPOSITORY="${{IMAGE_REPOSITORY:-{values["image"]["repository"]}}}"' in script
    assert f'IMAGE_TAG="${{IMAGE_TAG:-{values["image"]["tag"]}}}"' in script
    assert 'CERT_MANAGER_VERSION="${CERT_MANAGER_VERSION:-v1.17.0}"' in script
    kserve = re.search(r'KSERVE_VERSION="\$\{KSERVE_VERSION:-v0\.(\d+)\.\d+\}"', script)
    assert kserve and int(kserve.group(1)) >= 16
    for fragment in (
        "oci://ghcr.io/kserve/charts/kserve-crd",
        "kserve.controller.deploymentMode=Standard",
        "deploy/static/provider/kind/deploy.yaml",
        "docker build",
        "kind load docker-image",
        'upgrade --install "$RELEASE" "$ROOT/charts/ts-segmenter"',
        '"$ROOT/k8s/kind-values.yaml"',
    ):
        assert fragment in script, fragment


def test_kind_e2e_runs_the_kind_tests_against_the_gateway():
    script = (K8S / "kind-e2e.sh").read_text()
    assert "pytest tests/e2e -m kind" in script
    assert 'TS_SEGMENTER_URL="$url"' in script


# --------------------------------------------------------------------------- scripts


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_is_executable_strict_bash(name):
    path = K8S / name
    assert os.access(path, os.X_OK), f"{name} is not executable"
    lines = path.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_refuses_to_run_without_its_tools(name, tmp_path):
    """With only bash and coreutils on PATH, each script stops at once, naming the first missing tool."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "seq", "grep", "cat", "curl", "python3"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "PYTHON": shutil.which("python3") or "python3"}
    result = subprocess.run(["bash", str(K8S / name)], capture_output=True, text=True, env=env, timeout=30, check=False)
    assert result.returncode != 0
    first_missing = next(t for t in REQUIRED_TOOLS[name] if not shutil.which(t, path=str(bin_dir)))
    assert f"'{first_missing}' is not installed" in result.stderr, result.stderr
    assert result.stdout == ""


def test_scripts_pass_shellcheck():
    result = subprocess.run(["shellcheck", *[str(K8S / s) for s in SCRIPTS]], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_makefile_targets_call_the_scripts_when_present():
    text = (REPO_ROOT / "Makefile").read_text()
    for target, script in (("kind-up", "kind-up.sh"), ("kind-e2e", "kind-e2e.sh"), ("kind-down", "kind-down.sh")):
        match = re.search(rf"^{target}:.*\n((?:\t.*\n?)+)", text, re.MULTILINE)
        assert match, f"Makefile has no {target} target"
        assert f"k8s/{script}" in match.group(1)


def test_kind_up_documents_every_variable_it_reads():
    script = (K8S / "kind-up.sh").read_text()
    header, _, body = script.partition("set -euo pipefail")
    read = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*):-", body))
    assert read, "expected ${VAR:-default} reads"
    assert {v for v in read if v not in header} == set()
