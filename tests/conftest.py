"""Session-wide fixtures: real Label Studio and kube-apiserver harnesses, tiny trained models."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fixtures import LABEL_CONFIG, as_annotation, synthetic_csv

pytest_plugins = ["support.apiserver", "support.labelstudio"]


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory) -> Path:
    """A models root holding one published, quickly trained model for project 7 (synthetic data)."""
    from trainer.fit import LabelledSeries
    from trainer.labelstudio import TrainingData
    from trainer.publish import NoPublisher
    from trainer.run import train_project
    from trainer.settings import TrainingSettings
    from tscore.labelconfig import parse_label_config
    from tscore.labels import annotations_to_rows
    from tscore.series import read_series

    root = tmp_path_factory.mktemp("models")
    config = parse_label_config(LABEL_CONFIG)
    samples = []
    for seed in range(3):
        text, regions = synthetic_csv(seed=seed)
        series = read_series(text, config)
        samples.append(LabelledSeries(series.values, annotations_to_rows([as_annotation(regions)], series, config), f"s{seed}"))
    settings = TrainingSettings(model_dir=root, train_epochs=40, sequence_size=40, hidden_size=16, publisher="none", _env_file=None)
    asyncio.run(train_project(7, settings, NoPublisher(), TrainingData(config, samples)))
    return root
