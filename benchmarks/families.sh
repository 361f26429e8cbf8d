#!/usr/bin/env bash
# The accuracy grid of the dataset families (benchmarks/results/accuracy.md),
# family by family, so that each finished family is a complete answer (shipped
# Mask R-CNN against shipped BRefine, 3 seeds, test split) before the next one
# starts. Clutter runs at 3x the schedule from the start: at 1x, Mask R-CNN's
# test boundary AP there was 0.002 (val segm AP still rising), far below the
# 0.05 a family needs to separate the models. Then occlusion at 3x (learns
# slower, or ends lower?) and Mask R-CNN + Rank & Sort. Every step resumes,
# from the runs in the results and each training's last checkpoint: run the
# script again after a stop. A step whose trainings failed (a worker lost
# beside other work, say) is tried again, up to 3 times, before the script
# gives up. Hours of CPU on 2 cores.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}

acc() {
  local attempt
  for attempt in 1 2 3; do
    "$PY" benchmarks/accuracy.py --parallel "${PARALLEL:-2}" --name families "$@" && return 0
    echo "families.sh: step failed (attempt $attempt of 3): $*" >&2
  done
  return 1
}

for family in occlusion thin small shapes; do
  acc --families "$family" --variants mask-rcnn brefine --seeds 0 1 2 || exit 1
done
acc --families clutter occlusion --variants mask-rcnn brefine --seeds 0 1 2 --max-iters 3600 \
  --val-every 600 &&
acc --families occlusion thin small shapes --variants mask-rcnn+rs --seeds 0 1 2
