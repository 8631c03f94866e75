"""bench/bench_peers.py's arastory setup runs against the current recipe: it times the training loop through the
recipe's own throughput callback, so a change to that callback must keep the bench's clocks running (one worker run,
3 stories, one packed step; the peers' setups are the libraries' own and are exercised by the bench itself)."""

import json
import math
import os
import subprocess
import sys

from arastory.paths import REPO_DIR


def test_the_arastory_setup_trains_packed_and_reports_loop_rates(tmp_path):
    out = tmp_path / "arastory.json"
    proc = subprocess.run(
        [sys.executable, "bench/bench_peers.py", "--worker", "arastory", "--per-variety", "1", "--out", str(out)],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["tokens_per_s"] > 0 and result["tokens_per_cpu_s"] > 0
    assert result["padding_fraction"] == 0.0 and result["steps"] >= 1 and result["examples_per_step"] > 1
    assert math.isfinite(result["heldout_loss"]) and math.isfinite(result["train_loss"])
