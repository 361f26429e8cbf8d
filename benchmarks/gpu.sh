#!/usr/bin/env bash
# Every benchmark's CUDA rows, in one go, on one lent GPU.
#
# What it measures (each benchmark's docstring says more), CUDA rows only:
#   1. rank_sort.py   Rank & Sort loss, vectorised vs the per-positive loop, fwd+bwd,
#                     512/128 and 200 000 candidates with 500 and 2 000 positives;
#   2. head.py        the FCN mask head beside the fusion head at the paper's widths
#                     (256 channels at every stage, R50-FPN's) and at the configs'
#                     default ("fast"), 1-3 stages, NCHW fp32 and channels-last fp16
#                     autocast (the half and fast-1x1 variants: run head.py itself);
#   3. train_step.py  the whole model, Mask R-CNN beside BRefine and its head
#                     variants: a training iteration in fp32 and in AMP (fp16
#                     autocast + GradScaler), and inference img/s at 100 and 20
#                     detections per image, at the tiny scale (at init and fitted
#                     for 200 steps) and at R50-FPN 512 px (at init).
# eval.py and accuracy.py have no CUDA rows and are not run here.
#
# How long: about 8 minutes on one H100 (an estimate: 30 s, 1.5 min and 6 min;
# most of it is the fresh Python process each case runs in). It prints
# nvidia-smi's card and memory first, each step's wall time, and the total.
# The tables go to benchmarks/results/cuda/{rank_sort,head,train_step}.md,
# beside the CPU tables in benchmarks/results/ that a CUDA-only run would
# otherwise overwrite (--results DIR: elsewhere); each names the card.
#
# On a lent GPU machine, from the repository root (or anywhere):
#     bash benchmarks/gpu.sh
#     PYTHON=/path/to/python bash benchmarks/gpu.sh --results /tmp/cuda-tables
# (PYTHON: the interpreter with torch and the project; default .venv/bin/python.)
# Without a CUDA device it refuses (exit 2). `bash benchmarks/gpu.sh --dry-run`
# runs every step on the CPU at the smallest settings into a temporary folder
# (never benchmarks/results), to prove that each command line is valid and each
# benchmark runs end to end: about 2-3 minutes on 2 cores. tests/test_gpu_script.py
# runs that dry run; nothing in the test suite depends on a GPU.
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    echo "usage: bash benchmarks/gpu.sh [--dry-run] [--results DIR]"
}

dry_run=0
results=""
while (($#)); do
    case "$1" in
        --dry-run) dry_run=1 ;;
        --results)
            [[ $# -ge 2 ]] || { echo "gpu.sh: --results needs a folder" >&2; exit 2; }
            results=$(realpath -m -- "$2"); shift ;;
        --results=*) results=$(realpath -m -- "${1#--results=}") ;;
        -h|--help) usage; exit 0 ;;
        *) echo "gpu.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

cd "$(dirname "$0")/.."
if [[ -n ${PYTHON:-} ]]; then PY=$PYTHON
elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python
else PY=python3
fi

if ((dry_run)); then
    results=${results:-$(mktemp -d -t brefine-gpu-dry-run.XXXXXX)}
else
    if ! "$PY" -c 'import torch; assert torch.cuda.is_available()' >/dev/null 2>&1; then
        echo "gpu.sh: no CUDA GPU visible to torch ($PY); run it on a GPU machine, or pass --dry-run" >&2
        exit 2
    fi
    results=${results:-$PWD/benchmarks/results/cuda}
fi
mkdir -p "$results"

if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total --format=csv || true
fi
echo "gpu.sh: $([[ $dry_run == 1 ]] && echo "dry run on the CPU" || echo "CUDA rows"); tables in $results"

# step NAME COMMAND...: run it, echo it first and its wall time after
now() { date +%s.%N; }
seconds_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
total_start=$(now)
timings=()
step() {
    local name=$1 start took rc=0
    shift
    echo
    echo "+ $*"
    start=$(now)
    "$@" || rc=$?
    took=$(seconds_since "$start")
    if ((rc)); then
        echo "gpu.sh: step $name failed (exit $rc) after $took s" >&2
        exit "$rc"
    fi
    timings+=("$(printf '%-12s %7s s' "$name" "$took")")
    echo "gpu.sh: $name took $took s"
}

# The GPU run: one round (a lent GPU runs nothing else) of a few repeats; the
# cost is the 6 + 14 + 32 fresh processes, 8 of which fit a model for 200 steps
# (fp32 and AMP alike).
rank_sort=(--devices cuda --repeats 5)
head=(--devices cuda --variants paper fast --stages 1 2 3 --rounds 1 --repeats 10)
train_step=(--devices cuda --scales tiny r50 --fit-scales tiny --fit-iters 200
            --detections 100 20 --rounds 1 --repeats 5)
if ((dry_run)); then
    # The same command lines, so that their every flag is checked, with the
    # smallest settings after them (the last of a repeated flag wins): the CPU, one
    # size, one head variant at 8 RoIs, the tiny scale at init, one repeat; every
    # model and both layouts still run: 8 fresh processes that import MMDetection
    # (about 7 s of CPU each), and 2 that do not. Not covered: the CUDA-only paths (fp16 autocast,
    # GradScaler) and train_step's fitting, which the GPU run does at the tiny scale.
    rank_sort+=(--devices cpu --sizes 512:128 --repeats 1)
    head+=(--devices cpu --variants fast --stages 3 --rois 8 --repeats 1)
    train_step+=(--devices cpu --scales tiny --fit-iters 0 --detections 20 --repeats 1)
fi
step rank_sort "$PY" benchmarks/rank_sort.py --results "$results" "${rank_sort[@]}"
step head "$PY" benchmarks/head.py --results "$results" "${head[@]}"
step train_step "$PY" benchmarks/train_step.py --results "$results" "${train_step[@]}"

echo
echo "gpu.sh: wall time per step"
printf '  %s\n' "${timings[@]}"
printf '  %-12s %7s s\n' total "$(seconds_since "$total_start")"
echo "gpu.sh: tables in $results"
