#!/usr/bin/env bash
# Creates .venv with the pinned stack and the brefine package.
#
# The slow part is mmcv: no registry wheel exists for torch 2.14, so its C++
# ops are compiled from the sdist once (15-20 min on 2 cores) into a wheel
# cache keyed by mmcv, torch, Python and the compute target, and every later
# set-up installs that wheel in seconds. A re-run on a ready .venv is a no-op.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMCV_VERSION=2.3.6
# FORCE_CUDA=1 builds the CUDA ops too (the GPU image); the default follows
# what torch sees, so a CPU machine builds CPU ops only.
FORCE_CUDA=${FORCE_CUDA:-0}
# optional dependency groups of pyproject.toml to install (comma-separated)
EXTRAS=${BREFINE_EXTRAS:-test}
WHEEL_CACHE=${BREFINE_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/brefine/wheels}

stamp="$VENV/.brefine-setup"
fingerprint=$( (cat pyproject.toml tools/setup_env.sh; echo "$EXTRAS $FORCE_CUDA") | sha256sum | cut -c1-16)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$fingerprint" ]]; then
  exit 0
fi

log() { printf '[setup %(%H:%M:%S)T] %s\n' -1 "$*"; }

if [[ ! -x "$VENV/bin/python" ]]; then
  command -v "$PYTHON" >/dev/null || PYTHON=python3
  log "creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }

log "installing torch $TORCH_VERSION and torchvision $TORCHVISION_VERSION (first time: a few GB)"
pip install -q "pip>=24" "setuptools>=69,<82" wheel ninja psutil packaging
pip install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"

py_tag=$("$VENV/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
target=$([[ "$FORCE_CUDA" == 1 ]] && echo cuda || echo cpu)
cache_dir="$WHEEL_CACHE/mmcv-$MMCV_VERSION/torch-$TORCH_VERSION-$py_tag-$target"
if ! compgen -G "$cache_dir/onedl_mmcv-$MMCV_VERSION-*.whl" >/dev/null; then
  log "building mmcv $MMCV_VERSION ops against torch $TORCH_VERSION ($target)."
  log "this happens once per torch/python version and takes 15-20 min on 2 cores;"
  log "the wheel is cached in $cache_dir"
  build_dir=$(mktemp -d)
  trap 'rm -rf "$build_dir"' EXIT
  pip download -q --no-deps --no-binary :all: "onedl-mmcv==$MMCV_VERSION" -d "$build_dir"
  tar -xzf "$build_dir"/onedl_mmcv-"$MMCV_VERSION".tar.gz -C "$build_dir"
  src="$build_dir/onedl_mmcv-$MMCV_VERSION"
  # torch >= 2.14 headers refuse anything below C++20; mmcv hard-codes c++14/17.
  sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g; s#/std:c\+\+1[47]#/std:c++20#g' "$src/setup.py"
  started=$SECONDS
  # -g0: Python's build flags ask for debug info, which no release wheel
  # ships; without it a file of mmcv's ops compiled here in 22 s instead of 42
  CFLAGS="${CFLAGS:-} -g0" MMCV_WITH_OPS=1 FORCE_CUDA="$FORCE_CUDA" MAX_JOBS=${MAX_JOBS:-$(nproc)} \
    pip wheel --no-build-isolation --no-deps -w "$build_dir/dist" "$src" \
    > "$build_dir/build.log" 2>&1 &
  build_pid=$!
  while kill -0 "$build_pid" 2>/dev/null; do
    sleep 60
    kill -0 "$build_pid" 2>/dev/null && log "  still compiling mmcv ops ($(( (SECONDS - started) / 60 )) min so far)"
  done
  if ! wait "$build_pid"; then
    tail -n 60 "$build_dir/build.log"
    log "mmcv build failed; full log above (last 60 lines)"
    exit 1
  fi
  mkdir -p "$cache_dir"
  mv "$build_dir"/dist/onedl_mmcv-*.whl "$cache_dir/"
  log "mmcv built in $(( (SECONDS - started) / 60 )) min"
fi
log "installing mmcv from $cache_dir"
pip install -q --no-deps "$cache_dir"/onedl_mmcv-"$MMCV_VERSION"-*.whl

log "installing brefine and its dependencies"
pip install -q -e ".[$EXTRAS]"
"$VENV/bin/python" -c 'import mmcv.ops, mmdet, ray, mlflow; from mmcv.ops import RoIAlign'
echo "$fingerprint" > "$stamp"
log "ready: $VENV"
