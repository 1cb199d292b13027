"""The README stays true: its settings table covers every setting, its commands exist."""

from __future__ import annotations

import re
import subprocess

import pytest

from fixtures import REPO
from gateway.settings import GatewaySettings
from predictor.settings import PredictorSettings
from trainer.settings import TrainingSettings

README = (REPO / "README.md").read_text()


def env_names(settings_class) -> list[str]:
    names = []
    for name, field in settings_class.model_fields.items():
        alias = field.validation_alias
        names.extend(alias.choices if alias is not None and hasattr(alias, "choices") else [name.upper()])
    return names


@pytest.mark.parametrize("settings_class", [GatewaySettings, TrainingSettings, PredictorSettings])
def test_every_setting_is_documented_with_its_default(settings_class):
    for name, field in settings_class.model_fields.items():
        env = env_names(type("One", (), {"model_fields": {name: field}}))[0]
        rows = [line for line in README.splitlines() if line.startswith(f"| `{env}`")]
        assert rows, f"README's settings table lacks {env}"
        if field.default is not None:
            assert any(f"`{field.default}`" in row for row in rows), f"README shows a wrong default for {env}: {rows}"


def test_seed_variables_are_all_settings():
    seed = ["TRAIN_EPOCHS", "SEQUENCE_SIZE", "HIDDEN_SIZE", "BALANCED_ACCURACY_THRESHOLD", "MIN_CLASS_F1_THRESHOLD", "USE_CLASS_WEIGHTS", "MODEL_DIR", "LABEL_STUDIO_HOST", "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"]
    trainer = env_names(TrainingSettings)
    assert not [n for n in seed if n not in trainer]
    gateway = env_names(GatewaySettings)
    assert {"START_TRAINING_EACH_N_UPDATES", "BASIC_AUTH_USER", "BASIC_AUTH_PASS"} <= set(gateway)


def test_quick_start_commands_are_make_targets():
    assert re.search(r"^make run\b", README, re.M) and re.search(r"^make test\b", README, re.M)
    targets = subprocess.run(["make", "-pRrq", "-C", str(REPO)], capture_output=True, text=True).stdout
    for target in ("run", "test", "bench", "kind-up", "kind-e2e", "kind-down"):
        assert re.search(rf"^{target}:", targets, re.M), f"Makefile lacks {target}"
