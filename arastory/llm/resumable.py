"""Run a function over many items with a thread pool, appending each result to JSONL as it finishes.

A rerun skips every item whose key is already in the output file, so a killed job resumes where it stopped
and never pays twice for an item; failures are logged beside the output and retried by the next run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from arastory.io import JsonlAppender, iter_jsonl


@dataclass
class RunStats:
    total: int = 0
    already_done: int = 0
    done: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"total": self.total, "already_done": self.already_done, "done": self.done, "failed": self.failed}


def done_keys(path: str | Path, key: str) -> set:
    path = Path(path)
    if not path.exists():
        return set()
    return {row[key] for _, row in iter_jsonl(path, on_error="skip") if key in row}


def run_resumable(
    items: Iterable[dict],
    key: str,
    work: Callable[[dict], dict],
    out_path: str | Path,
    concurrency: int = 4,
    desc: str = "items",
    errors_path: str | Path | None = None,
    fail_fast: type[BaseException] | tuple = (),
) -> RunStats:
    """Apply `work` to each item not yet in `out_path` (matched on `item[key]`); append results as they finish.

    `work` returns the row to write (it must carry `key`). Exceptions of the `fail_fast` types stop the run
    (after in-flight items finish); any other exception is counted and logged to `errors_path`.
    """
    items = list(items)
    finished = done_keys(out_path, key)
    todo = [item for item in items if item[key] not in finished]
    stats = RunStats(total=len(items), already_done=len(items) - len(todo))
    errors_path = Path(errors_path) if errors_path else Path(str(out_path) + ".errors.jsonl")
    lock = threading.Lock()
    with (
        JsonlAppender(out_path) as out,
        tqdm(total=len(items), initial=stats.already_done, desc=desc, unit="item", dynamic_ncols=True) as bar,
    ):
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            pending = {}
            queue = iter(todo)
            stop: BaseException | None = None

            def submit_next() -> None:
                item = next(queue, None)
                if item is not None:
                    pending[pool.submit(work, item)] = item

            for _ in range(max(1, concurrency)):
                submit_next()
            while pending:
                finished_now, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished_now:
                    item = pending.pop(future)
                    try:
                        row = future.result()
                    except fail_fast as error:
                        stop = stop or error
                        continue
                    except Exception as error:
                        stats.failed += 1
                        stats.errors.append(f"{item[key]}: {error}")
                        with lock, JsonlAppender(errors_path) as err:
                            err.write({key: item[key], "error": str(error)[:500]})
                    else:
                        with lock:
                            out.write(row)
                        stats.done += 1
                        bar.update(1)
                    if stop is None:
                        submit_next()
            if stop is not None:
                raise stop
    return stats
