#!/usr/bin/env bash
# Open question 1: direct vs sequential on each dialect (6 jobs).
# Offline default: tiny model and bundled data. Real run: MODEL=acegpt_7b TRAINER=gpu DATA=arastories JUDGE=openai bash experiments/dialect_strategy_sweep/run.sh
source "$(dirname "$0")/../common.sh"
sweep dialect_strategy strategy=direct,sequential dialect=msa,egy,mor data="${DATA:-bundled}" model="${MODEL:-tiny}" \
  trainer="${TRAINER:-cpu}" logger="${LOGGER:-wandb}"
