"""The run's log file: what libraries say that a researcher does not need on the terminal.

HF Trainer's raw loss dicts and library warnings (FutureWarning, deprecations) go to
`<output_dir>/run.log`; the terminal keeps the per-stage progress bars, the cell counter and
the tables. A run that fails on a user error opens no log, so it leaves no file behind.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

LOG_FILE = "run.log"
# Loggers whose records belong in the log file only (the trainers' loss dicts; Python warnings).
FILE_ONLY = ("harness.training", "py.warnings")


def open_run_log(output_dir: str | Path) -> Path:
    """Send the training logs and every library warning of this process to `output_dir/run.log`."""
    path = Path(output_dir) / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in FILE_ONLY:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, logging.FileHandler)]:
            logger.removeHandler(old)
            old.close()
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # not to the terminal's handler
    logging.captureWarnings(True)
    warnings.simplefilter("default")  # each distinct warning once per place, into the file
    return path
