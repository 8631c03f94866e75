"""A training worker process (rank > 0) started by rank 0's `WorkerLauncher`: trains the run dir's saved config.yaml
in step with rank 0, writing nothing into the run dir.

    python -m arastory.train.worker <run dir>      # with the rank variables WorkerLauncher sets
"""

import sys

from arastory.cli import one_line_errors


@one_line_errors
def main(run_dir: str) -> None:
    from omegaconf import OmegaConf

    from arastory.plain import dict_config
    from arastory.train.recipe import train

    train(dict_config(OmegaConf.load(f"{run_dir}/config.yaml")), run_dir)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m arastory.train.worker <run dir>  (started by trainer=ddp runs, not by hand)")
    main(sys.argv[1])
