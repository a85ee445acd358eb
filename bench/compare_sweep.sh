#!/usr/bin/env bash
# The classic_control compare sweep behind docs/benchmarks.md, section
# "Classic control: compare sweep". Every algorithm gets the same env-step budget and
# the same evaluation (10 deterministic episodes on separate envs every 5k steps).
#
#   bench/compare_sweep.sh [OUT] [SEEDS] [STEPS] [ENV...]
#   BASELINE=sb3 bench/compare_sweep.sh ...     # add the Stable-Baselines3 runs
#   DOCS_IMG=docs/img/compare bench/compare_sweep.sh ...   # copy the plots for the docs
#
# Resumable: run the same command again after an interruption; finished runs are kept.
# Ctrl-C or SIGTERM (exit code 130 / 143) makes the running runs save a checkpoint first;
# a second sweep into the same OUT while one runs stops with the pid of the first.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results/compare}
SEEDS=${2:-10}
STEPS=${3:-200000}
shift $(( $# < 3 ? $# : 3 ))
ENVS=${*:-CartPole-v1 Acrobot-v1}
EXTRA=()
if [[ -n "${BASELINE:-}" ]]; then EXTRA+=(--baseline "$BASELINE"); fi
# shellcheck disable=SC2086  # ENVS is a list of env ids
nice -n 10 .venv/bin/python -m classic_control compare \
  --algos reinforce a2c a3c ppo trpo --envs $ENVS --seeds "$SEEDS" --steps "$STEPS" \
  --eval-every 5000 --eval-episodes 10 --jobs 2 --out "$OUT" "${EXTRA[@]}"
if [[ -n "${DOCS_IMG:-}" ]]; then
  mkdir -p "$DOCS_IMG"
  cp "$OUT"/report/*.png "$DOCS_IMG"/
fi
