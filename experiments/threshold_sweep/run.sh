#!/usr/bin/env bash
# Open question 3: how the translation-filter threshold changes downstream quality (Model B = sequential).
# Offline default: tiny model, bundled data, lexicon scorer. Real run: MODEL=acegpt_7b TRAINER=gpu
#   TRANSLATED=<parallel.jsonl from arastory.translate> ENCODER=labse JUDGE=openai bash experiments/threshold_sweep/run.sh
source "$(dirname "$0")/../common.sh"
sweep threshold strategy=sequential dialect="${DIALECT:-egy}" model="${MODEL:-tiny}" trainer="${TRAINER:-cpu}" \
  data.translated.path="${TRANSLATED:-bundled}" data.filter.encoder="${ENCODER:-lexicon}" \
  data.filter.threshold="${THRESHOLDS:-0.5,0.92,0.99}" logger="${LOGGER:-wandb}"
