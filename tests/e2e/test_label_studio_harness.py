"""The Label Studio harness is real.

A live LS 1.23.2 on 127.0.0.1, both token kinds, CSV-as-time-series import, annotations and prediction
validation, driven over HTTP with the basicmotions recording train_0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:  # imported by pytest as a plugin (importing it here would skip its assert rewriting)
    from support.labelstudio import LabelStudio

pytest_plugins = ["support.labelstudio"]
pytestmark = pytest.mark.e2e

DATA = Path("/work/shared/data/basicmotions")
META = json.loads((DATA / "meta.json").read_text())
CSV = DATA / "train_0.csv"
GROUND_TRUTH = json.loads((DATA / "train_0.json").read_text())


def ground_truth_regions() -> list[dict[str, Any]]:
    """train_0.json's segments as LS timeserieslabels regions."""
    return [
        {
            "id": f"gt{i}",
            "from_name": "label",
            "to_name": "ts",
            "type": "timeserieslabels",
            "value": {
                "start": seg["start"],
                "end": seg["end"],
                "instant": seg["instant"],
                "timeserieslabels": [seg["label"]],
            },
        }
        for i, seg in enumerate(GROUND_TRUTH["segments"])
    ]


@pytest.fixture(scope="module")
def project_id(label_studio: LabelStudio) -> int:
    """A basicmotions project in the session's LS."""
    return label_studio.create_project("harness basicmotions", META["label_config"])


@pytest.fixture(scope="module")
def task_id(label_studio: LabelStudio, project_id: int) -> int:
    """train_0.csv imported as one time-series task."""
    return label_studio.import_csv_task(project_id, CSV)


def test_health_and_version(label_studio: LabelStudio) -> None:
    """LS answers /health on the chosen loopback port, from our process, and is 1.23.2."""
    assert label_studio.running
    r = httpx.get(f"{label_studio.url}/health", timeout=10)
    assert r.status_code == 200 and r.json() == {"status": "UP"}
    assert label_studio.url == f"http://127.0.0.1:{label_studio.port}"
    ports = label_studio.listening_ports()
    assert ports is None or label_studio.port in ports, ports
    version = label_studio.http.get("/api/version").json()
    assert version["release"] == "1.23.2", version


def test_api_needs_a_token(label_studio: LabelStudio) -> None:
    """Without a valid token the API answers 401 (so the token checks below mean something)."""
    assert httpx.get(f"{label_studio.url}/api/projects", timeout=10).status_code == 401
    bad = {"Authorization": "Token not-the-key"}
    assert httpx.get(f"{label_studio.url}/api/projects", headers=bad, timeout=10).status_code == 401


def test_legacy_token_via_sdk(label_studio: LabelStudio) -> None:
    """The SDK client built from the legacy key is the admin user."""
    assert label_studio.sdk().users.whoami().email == label_studio.email


def test_project_has_the_basicmotions_config(label_studio: LabelStudio, project_id: int) -> None:
    """The project stores the basicmotions label config and its three labels."""
    project = label_studio.sdk().projects.get(id=project_id)
    assert project.label_config == META["label_config"]
    labels = project.parsed_label_config["label"]["labels"]
    assert labels == META["labels"]


def test_csv_is_one_task_with_an_upload_url(label_studio: LabelStudio, project_id: int, task_id: int) -> None:
    """A 1000-row CSV becomes ONE task whose csv_url is a relative /data/upload/ path."""
    assert label_studio.task_ids(project_id) == [task_id]
    data = label_studio.task(task_id)["data"]
    assert list(data) == ["csv_url"], data
    assert data["csv_url"].startswith(f"/data/upload/{project_id}/"), data
    assert data["csv_url"].endswith("train_0.csv"), data


def test_uploaded_csv_downloads_with_legacy_token(label_studio: LabelStudio, task_id: int) -> None:
    """The uploaded CSV downloads byte-identical with `Token <key>`, and not without auth."""
    url = label_studio.url + label_studio.task(task_id)["data"]["csv_url"]
    assert httpx.get(url, timeout=30).status_code == 401
    r = httpx.get(url, headers={"Authorization": f"Token {label_studio.api_key}"}, timeout=30)
    assert r.status_code == 200
    assert r.content == CSV.read_bytes()


def test_personal_access_token(label_studio: LabelStudio, task_id: int) -> None:
    """A PAT works through the SDK, and as raw HTTP once exchanged for an access JWT."""
    pat = label_studio.personal_access_token()
    assert pat.count(".") == 2 and pat != label_studio.api_key
    assert label_studio.personal_access_token() == pat  # cached: LS allows one live PAT per user
    # The SDK exchanges the PAT itself.
    assert label_studio.sdk(api_key=pat).users.whoami().email == label_studio.email
    # Raw HTTP: the PAT is not a bearer token; its access token is.
    url = label_studio.url + label_studio.task(task_id)["data"]["csv_url"]
    assert httpx.get(url, headers={"Authorization": f"Bearer {pat}"}, timeout=30).status_code == 401
    access = label_studio.access_token(pat)
    r = httpx.get(url, headers={"Authorization": f"Bearer {access}"}, timeout=30)
    assert r.status_code == 200
    assert r.content == CSV.read_bytes()


def test_annotate_with_ground_truth_and_read_back(label_studio: LabelStudio, task_id: int) -> None:
    """train_0's ground truth saved as an annotation reads back region for region."""
    regions = ground_truth_regions()
    assert len(regions) == len(GROUND_TRUTH["segments"]) > 0
    annotation_id = label_studio.annotate(task_id, regions)
    [stored] = [a for a in label_studio.annotations(task_id) if a["id"] == annotation_id]
    key = lambda r: (r["from_name"], r["to_name"], r["type"], r["value"])  # noqa: E731
    assert sorted(map(key, stored["result"]), key=str) == sorted(map(key, regions), key=str)
    assert label_studio.task(task_id)["is_labeled"] is True


def test_predictions_are_validated(label_studio: LabelStudio, task_id: int) -> None:
    """The prediction-validation feature flag is on: LS answers 400 on a label outside the config."""
    region = ground_truth_regions()[0]
    bad = {**region, "value": {**region["value"], "timeserieslabels": ["Standing"]}}
    r = label_studio.http.post("/api/predictions", json={"task": task_id, "result": [bad], "model_version": "x"})
    assert r.status_code == 400, r.text
    r = label_studio.http.post("/api/predictions", json={"task": task_id, "result": [region], "model_version": "x"})
    assert r.status_code == 201, r.text
    stored = label_studio.predictions(task_id)
    assert [p["result"][0]["value"] for p in stored] == [region["value"]]
