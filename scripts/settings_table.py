"""Print the README's settings tables from the settings classes (keep README.md in sync with them).

Usage: .venv/bin/python scripts/settings_table.py > /tmp/table.md   (tests/test_readme.py checks the README)
"""

from __future__ import annotations

from gateway.settings import GatewaySettings
from predictor.settings import PredictorSettings
from trainer.settings import TrainingSettings
from tscore.settings import CommonSettings


def env_name(name: str, field) -> str:
    alias = field.validation_alias
    if alias is not None and hasattr(alias, "choices"):
        return " / ".join(f"`{choice}`" for choice in alias.choices)
    return f"`{name.upper()}`"


def main() -> None:
    shared = set(CommonSettings.model_fields)
    sections = [
        ("Shared by gateway and trainer", CommonSettings, set()),
        ("Gateway", GatewaySettings, shared),
        ("Trainer", TrainingSettings, shared),
        ("Predictor", PredictorSettings, set()),
    ]
    for title, settings_class, skip in sections:
        print(f"\n**{title}**\n\n| variable | default | meaning |\n|---|---|---|")
        for name, field in settings_class.model_fields.items():
            if name in skip:
                continue
            default = "unset" if field.default is None else f"`{field.default}`"
            print(f"| {env_name(name, field)} | {default} | {(field.description or '').replace(chr(10), ' ')} |")


if __name__ == "__main__":
    main()
