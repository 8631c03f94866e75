#!/usr/bin/env bash
# Open question 2: how results change with the size of the synthetic set (nested subsets: the small set is inside the large one).
# Offline default: tiny model, bundled stories (57 training stories per variety). Real run:
#   SYNTHETIC=outputs/synth/egy/stories.jsonl SIZES=500,1000,3000 MODEL=acegpt_7b TRAINER=gpu JUDGE=openai bash experiments/size_sweep/run.sh
source "$(dirname "$0")/../common.sh"
sweep size strategy="${STRATEGY:-direct}" dialect="${DIALECT:-egy}" model="${MODEL:-tiny}" trainer="${TRAINER:-cpu}" \
  data.synthetic.path="${SYNTHETIC:-bundled}" data.synthetic.size="${SIZES:-15,30,57}" logger="${LOGGER:-wandb}"
