"""Logging for the commands: plain messages on the console (info to stdout, warnings to stderr), timestamped in the
run's log.

Hydra configures it from arastory/conf/hydra/job_logging/arastory.yaml; modules log with `logging.getLogger(__name__)`.
"""

import logging


class BelowWarning(logging.Filter):
    """Lets through what is not a warning or an error (those go to stderr)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING
