#!/usr/bin/env bash
# The accuracy grid of the dataset families (benchmarks/results/accuracy.md), in
# the order that answers the main question first: shipped Mask R-CNN against
# shipped BRefine on every family, seed 0, then seeds 1-2; then Mask R-CNN +
# Rank & Sort; then the occlusion and clutter families at 3x the schedule (does
# BRefine learn slower, or end lower? On clutter, Mask R-CNN's val segm AP was
# 0.010 at 800 of 1 200 iterations: the 1x schedule may leave both near zero). Every step resumes, from the runs in the results and
# each training's last checkpoint: run the script again after a stop. A step
# whose trainings failed (a worker lost beside other work, say) is tried again,
# up to 3 times, before the script gives up. Hours of CPU on 2 cores.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
families=(clutter occlusion thin small shapes)

acc() {
  local attempt
  for attempt in 1 2 3; do
    "$PY" benchmarks/accuracy.py --parallel "${PARALLEL:-2}" --name families "$@" && return 0
    echo "families.sh: step failed (attempt $attempt of 3): $*" >&2
  done
  return 1
}

acc --families "${families[@]}" --variants mask-rcnn brefine --seeds 0 &&
acc --families "${families[@]}" --variants mask-rcnn brefine --seeds 1 2 &&
acc --families "${families[@]}" --variants mask-rcnn+rs --seeds 0 1 2 &&
acc --families occlusion clutter --variants mask-rcnn brefine --seeds 0 1 2 --max-iters 3600 \
  --val-every 600
