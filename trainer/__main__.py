"""``python -m trainer --project <id>``: train a project's model and roll it out.

Prints one JSON line prefixed with ``TS_SEGMENTER_RESULT`` as its last output. Exit codes:
0 trained (published, or kept as a candidate by the validation gate), 2 bad input (e.g. no
usable labelled tasks, an unusable label config), 1 any other failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from trainer.settings import TrainingSettings
from tscore.errors import InvalidInput, SegmenterError
from tscore.logs import configure_logging
from tscore.projects import parse_project_id

RESULT_PREFIX = "TS_SEGMENTER_RESULT "
log = logging.getLogger("trainer")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", required=True, help="Label Studio project id")
    args = parser.parse_args(argv)
    settings = TrainingSettings()
    configure_logging(settings.log_level)
    try:
        project = parse_project_id(args.project)
        from trainer.run import train_project  # torch loads only once the request is valid

        outcome = asyncio.run(train_project(project, settings))
    except InvalidInput as exc:
        log.error("training refused: %s", exc.message)
        print(RESULT_PREFIX + json.dumps({"status": "error", "error": exc.message}), flush=True)
        return 2
    except SegmenterError as exc:
        log.error("training failed: %s", exc.message)
        print(RESULT_PREFIX + json.dumps({"status": "error", "error": exc.message}), flush=True)
        return 1
    except Exception as exc:  # noqa: BLE001 - the process reports every failure as its result line
        log.exception("training failed")
        print(RESULT_PREFIX + json.dumps({"status": "error", "error": f"{exc.__class__.__name__}: {exc}"}), flush=True)
        return 1
    print(RESULT_PREFIX + json.dumps(outcome.to_json()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
