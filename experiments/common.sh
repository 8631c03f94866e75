#!/usr/bin/env bash
# Shared steps of the experiment scripts: train a sweep, evaluate every job on the same prompts, compare.
# Used by experiments/*/run.sh; set JUDGE=openai (with OPENAI_API_KEY) for the study's GPT-4 judge.
# Every script takes the Hydra launcher as its first argument and launcher settings after it, so one command runs a
# whole study on a cluster (docs/scaling.md):
#   bash experiments/size_sweep/run.sh submitit_slurm hydra.launcher.partition=gpu hydra.launcher.gpus_per_node=1
#   bash experiments/size_sweep/run.sh submitit_local        # every job at once on this machine
#   bash experiments/size_sweep/run.sh                       # basic: one job after another (the default)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-python}
JUDGE=${JUDGE:-none}          # none (metrics only, offline) | openai | hf
N_PER_VARIETY=${N_PER_VARIETY:-10}
EVAL_ARGS=${EVAL_ARGS:-"sampling.max_new_tokens=120"}
LAUNCHER=${1:-basic}          # basic | submitit_local | submitit_slurm | joblib (arastory/conf/hydra/launcher/)
shift $(( $# > 0 ? 1 : 0 ))
LAUNCH=("hydra/launcher=$LAUNCHER" "$@")   # and its settings: hydra.launcher.partition=gpu ...

# sweep <study name> <train.py overrides...>: trains, evaluates each job, writes <sweep dir>/compare.
sweep() {
  local study=$1; shift
  local sweep_dir="multirun/experiments/${study}/$(date +%Y-%m-%d_%H-%M-%S)"
  $PY train.py -m "${LAUNCH[@]}" "$@" hydra.sweep.dir="$sweep_dir"
  local runs=()
  for run in "$sweep_dir"/*/; do
    [ -f "$run/metrics.json" ] && runs+=("${run%/}")
  done
  if [ ${#runs[@]} -gt 0 ]; then
    # The first job's evaluation samples the prompts (<sweep dir>/eval/first); every other job is scored on the
    # same ones, all at once (<sweep dir>/eval/0, 1, ...), through the same launcher.
    $PY evaluate.py -m "${LAUNCH[@]}" run="${runs[0]}" judge="$JUDGE" n_per_variety="$N_PER_VARIETY" $EVAL_ARGS \
      hydra.sweep.dir="$sweep_dir/eval" hydra.sweep.subdir=first
    if [ ${#runs[@]} -gt 1 ]; then
      local rest; rest=$(IFS=,; echo "${runs[*]:1}")
      $PY evaluate.py -m "${LAUNCH[@]}" run="$rest" judge="$JUDGE" n_per_variety="$N_PER_VARIETY" $EVAL_ARGS \
        prompts="$sweep_dir/eval/first/prompts.jsonl" hydra.sweep.dir="$sweep_dir/eval"
    fi
  fi
  $PY evaluate.py compare="$sweep_dir" out="$sweep_dir/compare"
  echo "report: $sweep_dir/compare/compare.md"
}
