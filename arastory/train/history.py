"""Per-step histories of a stage (metrics.csv, batches.jsonl) that survive a kill: written as they happen, cut back
to the checkpoint's step when the stage resumes, then continued, so every step appears exactly once.

W&B writes its history to disk (or the server) every few seconds, so a killed process loses its last rows there;
a resumed run logs the kept metrics.csv rows into W&B again (`replay_into`), so the W&B curves have no gaps."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING

from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

from arastory.io import JsonlAppender, atomic_write_text, json_line, read_jsonl

if TYPE_CHECKING:
    import pytorch_lightning as pl

    from arastory.train.module import StoryLM

BATCH_LOG = "batches.jsonl"


def keep_csv_rows_before(path: Path, step: int) -> tuple[list[str], list[dict]]:
    """Drop the rows of `path` logged at `step` or later (steps a resumed stage runs again); (header, kept rows)."""
    if not path.exists():
        return [], []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        rows = [row for row in reader if row.get("step") not in (None, "") and int(float(row["step"])) < step]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, out.getvalue())
    return header, rows


def _row_key(step, keys) -> tuple:
    return int(float(step)), frozenset(k for k in keys if k != "step")


def csv_history(stage_dir: Path) -> list[dict]:
    """The rows of a stage's metrics.csv, empty values left out."""
    path = Path(stage_dir) / ExperimentWriter.NAME_METRICS_FILE
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return [{k: v for k, v in row.items() if v not in (None, "")} for row in csv.DictReader(handle)]


def replay_into(loggers: list, rows: list[dict]) -> None:
    """Log metrics.csv rows again (at their own steps) into loggers that may have lost them in a kill."""
    for row in rows:
        metrics = {k: float(v) for k, v in row.items() if k != "step"}
        for logger in loggers:
            logger.log_metrics(metrics, step=int(float(row["step"])))


class _ContinuingWriter(ExperimentWriter):
    """Lightning's CSV writer, minus deleting an existing metrics.csv: it appends under the header already there,
    and skips a row the killed run already wrote (an epoch-end row logged after an epoch-end checkpoint, which
    Lightning logs again on resume)."""

    def __init__(self, log_dir: str, header: list[str], kept_rows: list[dict]):
        super().__init__(log_dir)
        self.metrics_keys = list(header)
        self._written = {_row_key(row["step"], [k for k, v in row.items() if v not in (None, "")]) for row in kept_rows}

    def _check_log_dir_exists(self) -> None:
        pass

    def log_metrics(self, metrics_dict: dict, step: int | None = None) -> None:
        if step is not None and _row_key(step, metrics_dict) in self._written:  # keys of the row
            return
        super().log_metrics(metrics_dict, step)


class StageCSVLogger(CSVLogger):
    """`<stage dir>/metrics.csv`, flushed at every log call and continued (not overwritten) by a resumed stage."""

    def __init__(self, stage_dir: Path, resume_step: int):
        self._kept = keep_csv_rows_before(Path(stage_dir) / ExperimentWriter.NAME_METRICS_FILE, resume_step)
        super().__init__(str(stage_dir), name="", version="", flush_logs_every_n_steps=1)

    @property
    def kept_rows(self) -> list[dict]:
        """The rows a resumed stage kept from before its checkpoint (empty values left out)."""
        return [{k: v for k, v in row.items() if v not in (None, "")} for row in self._kept[1]]

    @property
    def experiment(self) -> ExperimentWriter:
        if not isinstance(self._experiment, ExperimentWriter):
            self._experiment = _ContinuingWriter(self.log_dir, *self._kept)
        return self._experiment


class StepMetrics(Callback):
    """Writes each optimizer step's training loss and learning rate to the loggers when the step ends, before that
    step's checkpoint: Lightning writes them after the checkpoint, so a run killed right after one lost that row
    for good (the resumed run starts after that step). Same steps as Lightning: every `log_every_n_steps`."""

    def __init__(self) -> None:
        self._last_step: int | None = None

    def on_train_batch_end(  # type: ignore[override]  # a StoryLM only
        self, trainer: pl.Trainer, pl_module: StoryLM, outputs: object, batch: dict, batch_idx: int
    ) -> None:
        if trainer.global_step == self._last_step or not pl_module.step_metrics:
            return  # accumulating gradients: no optimizer step yet
        self._last_step = step = trainer.global_step
        every = trainer.log_every_n_steps  # type: ignore[attr-defined]  # set by Lightning's logger connector
        if step % every == 0 or step == trainer.max_steps or trainer.should_stop:
            for logger in trainer.loggers:
                metrics = {
                    key: float(value) for key, value in pl_module.step_metrics.items()
                }  # device values: read here
                logger.log_metrics({**metrics, "epoch": trainer.current_epoch}, step=step - 1)


class BatchLog(Callback):
    """`<stage dir>/batches.jsonl`: one row per training batch, {step, epoch, batch, ids}: which examples each
    optimizer step saw, in order. A resumed stage keeps the rows before its checkpoint's step.

    Rows are flushed as written and fsynced when a checkpoint is saved (and at the end): a resume needs exactly the
    rows before its checkpoint, so that is when they must be on disk; an fsync per step made each step wait on the
    disk (most of arastory's wall time that was not CPU time in bench/bench_peers.py)."""

    def __init__(self, stage_dir: Path, resume_step: int):
        path = Path(stage_dir) / BATCH_LOG
        if path.exists():
            kept = [row for row in read_jsonl(path, on_error="skip") if row["step"] < resume_step]
            atomic_write_text(path, "".join(json_line(row) for row in kept))
        self.path = path
        self._out: JsonlAppender | None = None

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: dict, batch_idx: int
    ) -> None:
        if self._out is None:
            self._out = JsonlAppender(self.path)
        self._out.write(
            {
                "step": int(trainer.global_step),
                "epoch": int(trainer.current_epoch),
                "batch": int(batch_idx),
                "ids": list(batch.get("global_example_ids", batch["example_ids"])),
            },
            sync=False,
        )  # all ranks' examples

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if self._out is not None:  # before the checkpoint is written: its rows are on disk first
            self._out.sync()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._out is not None:
            self._out.sync()
            self._out.close()
            self._out = None


def read_batch_log(stage_dir: Path) -> list[dict]:
    return read_jsonl(Path(stage_dir) / BATCH_LOG)
