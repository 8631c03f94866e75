#!/usr/bin/env bash
# The study's Model A (direct) and Model B (sequential) on AceGPT-7B with its settings, then its baselines on the same prompts.
# Needs a GPU, the released CSVs (../shared/data/arastories), a filtered translated set and OPENAI_API_KEY for the judge:
#   TRANSLATED=outputs/filter/tinystories/kept.jsonl DIALECT=egy bash experiments/paper_reproduction/run.sh
# On a SLURM cluster: ... bash experiments/paper_reproduction/run.sh submitit_slurm hydra.launcher.partition=gpu
source "$(dirname "$0")/../common.sh"
JUDGE=${JUDGE:-openai}; N_PER_VARIETY=${N_PER_VARIETY:-100}
sweep paper experiment=paper_model_a,paper_model_b dialect="${DIALECT:-egy}" \
  data.translated.path="${TRANSLATED:?set TRANSLATED to a parallel .jsonl}" data.filter.encoder="${ENCODER:-labse}"
latest=$(ls -d multirun/experiments/paper/*/ | tail -1)
prompts="${latest}eval/first/prompts.jsonl"
for baseline in "system=openai system.model=gpt-3.5-turbo" "system=hf system.model=FreedomIntelligence/AceGPT-7B-chat system.quant=nf4"; do
  name=$(echo "$baseline" | sed 's/.*system.model=\([^ ]*\).*/\1/' | tr '/' '_')
  $PY evaluate.py $baseline prompts="$prompts" judge="$JUDGE" out="$latest/baselines/$name"
done
$PY evaluate.py compare="$latest" out="$latest/compare"
