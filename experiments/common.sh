#!/usr/bin/env bash
# Shared steps of the experiment scripts: train a sweep, evaluate every job on the same prompts, compare.
# Used by experiments/*/run.sh; set JUDGE=openai (with OPENAI_API_KEY) for the study's GPT-4 judge.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-python}
JUDGE=${JUDGE:-none}          # none (metrics only, offline) | openai | hf
N_PER_VARIETY=${N_PER_VARIETY:-10}
EVAL_ARGS=${EVAL_ARGS:-"sampling.max_new_tokens=120"}

# sweep <study name> <train.py overrides...>: trains, evaluates each job, writes <sweep dir>/compare.
sweep() {
  local study=$1; shift
  local sweep_dir="multirun/experiments/${study}/$(date +%Y-%m-%d_%H-%M-%S)"
  $PY train.py -m "$@" hydra.sweep.dir="$sweep_dir"
  local prompts=""
  for run in "$sweep_dir"/*/; do
    [ -f "$run/metrics.json" ] || continue
    $PY evaluate.py run="$run" out="$run/eval" judge="$JUDGE" n_per_variety="$N_PER_VARIETY" $EVAL_ARGS ${prompts:+prompts=$prompts}
    prompts=${prompts:-$run/eval/prompts.jsonl}
  done
  $PY evaluate.py compare="$sweep_dir" out="$sweep_dir/compare"
  echo "report: $sweep_dir/compare/compare.md"
}
