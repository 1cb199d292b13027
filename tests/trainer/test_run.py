"""One training run end to end on disk: version, CURRENT, STATUS.json, the validation gate, rollback, pruning.

Training data is injected (``TrainingData``) instead of fetched from Label Studio; the fetching
side runs against a real Label Studio in the end-to-end test.
"""

from __future__ import annotations

import json
import shutil

import pytest

from fixtures import LABEL_CONFIG, as_annotation, run_python, synthetic_csv
from trainer.fit import LabelledSeries
from trainer.labelstudio import TrainingData
from trainer.publish import NoPublisher, PublishError
from trainer.run import gate, train_project
from trainer.settings import TrainingSettings
from tscore.artifacts import ArtifactStore
from tscore.labelconfig import parse_label_config
from tscore.labels import annotations_to_rows
from tscore.series import read_series

CONFIG = parse_label_config(LABEL_CONFIG)


def data(seeds=range(3)) -> TrainingData:
    """The same synthetic tasks the session's ``trained_model_dir`` model was trained on."""
    samples = []
    for seed in seeds:
        text, regions = synthetic_csv(seed=seed)
        series = read_series(text, CONFIG)
        samples.append(LabelledSeries(series.values, annotations_to_rows([as_annotation(regions)], series, CONFIG), f"s{seed}"))
    return TrainingData(CONFIG, samples, skipped={12: "the CSV lacks column(s) 'b'"})


def settings(root, **overrides) -> TrainingSettings:
    base = dict(model_dir=root, train_epochs=2, sequence_size=40, hidden_size=8, num_layers=1, publisher="none", _env_file=None)
    return TrainingSettings(**{**base, **overrides})


class RecordingPublisher:
    """Records rollouts and checks that CURRENT already names the version when rollout is called."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self.calls: list[tuple[int, str, str | None]] = []

    def rollout(self, project: int, version: str) -> None:
        self.calls.append((project, version, self.store.current(project)))


class FailingPublisher:
    def rollout(self, project: int, version: str) -> None:
        raise PublishError(f"predictor refused to load {version}: 503")


@pytest.fixture
def served(trained_model_dir, tmp_path):
    """A private copy of the session's models root: project 7 serves a well-trained model."""
    root = tmp_path / "models"
    shutil.copytree(trained_model_dir, root)
    store = ArtifactStore(root)
    assert store.current(7)
    return root, store, store.current(7)


async def test_first_training_writes_publishes_and_records(tmp_path):
    store = ArtifactStore(tmp_path)
    publisher = RecordingPublisher(store)
    outcome = await train_project(3, settings(tmp_path), publisher, data())
    version = outcome.version
    assert outcome.status == "published" and outcome.served_version == version
    assert version.startswith("p3-v0001-")
    assert publisher.calls == [(3, version, version)]
    assert store.current(3) == version
    assert sorted(p.name for p in (tmp_path / "project-3").iterdir()) == ["CURRENT", "STATUS.json", version]
    assert sorted(p.name for p in (tmp_path / "project-3" / version).iterdir()) == ["meta.json", "model.pt"]
    meta = store.read_meta(3, version)
    assert meta["version"] == version and meta["project"] == 3
    assert meta["labels"] == ["Run", "Walk", "Fall"] and meta["channels"] == ["a", "b"]
    assert meta["settings"]["sequence_size"] == 40 and meta["network"]["hidden_size"] == 8
    assert meta["training"]["epochs"] <= 2 and meta["training"]["tasks"] == 3
    assert "validation_score" in meta["metrics"] and meta["created_at"].endswith("Z")
    status = store.read_status(3)
    assert status["status"] == "published" and status["version"] == version
    assert status["skipped_tasks"] == {"12": "the CSV lacks column(s) 'b'"}
    assert set(status["timings"]) == {"fetch_s", "fit_s", "total_s"}
    json.dumps(outcome.to_json())


async def test_a_worse_model_stays_a_candidate(served):
    root, store, previous = served
    outcome = await train_project(7, settings(root, train_epochs=1, validation_gate_margin=0.0), NoPublisher(), data())
    assert outcome.status == "candidate"
    assert outcome.served_score is not None and outcome.validation_score < outcome.served_score
    assert store.current(7) == previous
    assert outcome.served_version == previous
    assert outcome.version in store.versions(7)  # kept for inspection, not served
    status = store.read_status(7)
    assert status["status"] == "candidate"
    assert "worse than the served version" in status["reason"]


async def test_a_better_or_equal_model_replaces_the_served_one(served):
    root, store, previous = served
    outcome = await train_project(7, settings(root, train_epochs=1, validation_gate_margin=1.0), NoPublisher(), data())
    assert outcome.status == "published"
    assert store.current(7) == outcome.version != previous
    assert outcome.version > previous


async def test_a_failed_rollout_points_current_back_at_the_previous_version(served):
    root, store, previous = served
    with pytest.raises(PublishError, match="refused"):
        await train_project(7, settings(root, validation_gate_margin=1.0), FailingPublisher(), data())
    assert store.current(7) == previous
    status = store.read_status(7)
    assert status["status"] == "failed"
    assert status["served_version"] == previous


async def test_old_versions_are_pruned_to_keep_versions(tmp_path):
    store = ArtifactStore(tmp_path)
    made = [
        (await train_project(5, settings(tmp_path, train_epochs=1, keep_versions=2, validation_gate_margin=1.0), NoPublisher(), data([0]))).version
        for _ in range(3)
    ]
    assert store.versions(5) == made[1:]
    assert store.current(5) == made[-1]


def test_gate():
    assert gate(0.5, None, 0.0)[0]
    assert gate(0.80, 0.84, 0.05)[0]
    accepted, reason = gate(0.70, 0.84, 0.05)
    assert not accepted and "0.700" in reason and "0.840" in reason


def test_cli_refuses_a_path_as_project(tmp_path):
    done = run_python("-m", "trainer", "--project", "../x", env={"MODEL_DIR": str(tmp_path), "LABEL_STUDIO_URL": "http://127.0.0.1:9"})
    assert done.returncode == 2, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("TS_SEGMENTER_RESULT ")
    result = json.loads(last.removeprefix("TS_SEGMENTER_RESULT "))
    assert result["status"] == "error"
    assert "invalid project id '../x'" in result["error"]
    assert list(tmp_path.iterdir()) == []
