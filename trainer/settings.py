"""Trainer settings: every seed variable plus ts-segmenter's own training and rollout knobs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tscore.settings import CommonSettings


class TrainingSettings(CommonSettings):
    """Configuration of one trainer process (environment variables, no prefix)."""

    train_epochs: int = Field(1000, ge=1)
    """Upper bound on training epochs (seed: TRAIN_EPOCHS)."""

    sequence_size: int = Field(50, ge=2)
    """Sliding window length in rows (seed: SEQUENCE_SIZE)."""

    hidden_size: int = Field(64, ge=1)
    """LSTM hidden units (seed: HIDDEN_SIZE)."""

    num_layers: int = Field(1, ge=1)
    """Stacked LSTM layers. The convolutional encoder already gives the LSTM local features, so
    one bidirectional layer matches two in quality at a third of the LSTM's cost."""

    conv_width: int = Field(32, ge=1)
    """Channels of the convolutional encoder in front of the LSTM."""

    downsample: int = Field(5, ge=1)
    """The LSTM reads one step per ``DOWNSAMPLE`` rows of convolutional features (1 = every row)."""

    bidirectional: bool = True
    """Read windows in both directions."""

    dropout: float = Field(0.2, ge=0, lt=1)
    """Dropout between LSTM layers and before the classifier."""

    balanced_accuracy_threshold: float = Field(0.85, ge=0, le=1)
    """Training may stop once validation balanced accuracy reaches this (seed: BALANCED_ACCURACY_THRESHOLD)."""

    min_class_f1_threshold: float = Field(0.70, ge=0, le=1)
    """... and the worst class's validation F1 reaches this (seed: MIN_CLASS_F1_THRESHOLD)."""

    use_class_weights: bool = True
    """Inverse-frequency class weights in the loss (seed: USE_CLASS_WEIGHTS)."""

    batch_size: int = Field(64, ge=1)
    """Windows per optimisation step."""

    learning_rate: float = Field(1e-2, gt=0)
    """Adam learning rate."""

    patience: int = Field(10, ge=1)
    """Epochs without validation improvement before stopping once the thresholds are met."""

    max_patience: int = Field(25, ge=1)
    """Epochs without validation improvement after which training stops even below the thresholds."""

    validation_fraction: float = Field(0.2, gt=0, lt=1)
    """Share of the labelled data held out to judge stopping and the validation gate."""

    augmentation: float = Field(0.1, ge=0, le=1)
    """Strength of training-time augmentation: per-window channel gains and noise of this standard deviation (0 disables)."""

    seed: int = 0
    """Random seed (windows, initialisation, split)."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train: CUDA when available under ``auto``."""

    num_threads: int = Field(1, ge=0)
    """CPU threads for torch; 0 keeps torch's default. One thread is fastest for this small
    network on a shared machine: idle OpenMP threads spinning against other work cost 10x."""

    validation_gate_margin: float = Field(0.05, ge=0, le=1)
    """A new version is published only if its validation score is at most this much below the served one's."""

    keep_versions: int = Field(5, ge=1)
    """Versions kept per project for rollback (the served one is never deleted)."""

    publisher: Literal["local", "kubernetes", "none"] = "local"
    """How a new version is rolled out: the local predictor server, a KServe InferenceService, or not at all."""

    predictor_url: str = "http://127.0.0.1:9091"
    """Local predictor server (``publisher=local``): its repository API loads the new version."""

    models_pvc_name: str = "ts-segmenter-models"
    """PVC holding ``MODEL_DIR`` (``publisher=kubernetes``): STORAGE_URI is ``pvc://<claim>/project-<id>/<version>``."""

    isvc_template_path: str = "/etc/ts-segmenter/templates/inferenceservice.yaml"
    """InferenceService manifest rendered by the Helm chart (``publisher=kubernetes``)."""

    isvc_name_prefix: str = "ts-segmenter-p"
    """InferenceService name prefix; project 47 is served by ``<prefix>-47``."""

    kubernetes_namespace: str = "default"
    """Namespace of the InferenceServices (``publisher=kubernetes``)."""

    label_studio_page_size: int = Field(100, ge=1)
    """Tasks per page fetched from Label Studio."""
