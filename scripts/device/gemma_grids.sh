#!/usr/bin/env bash
# The EmbeddingGemma-300M grids of the paper's recipe (configs/compare/paper-{xquad,mlqa}-gemma.yaml) on a lent
# GPU machine (the `device` tool: 64 MiB per call, nothing reachable from there, a warm machine keeps what
# earlier calls sent). How the model and data get there, once, from this checkout:
#
#   python scripts/device/pack_gemma.py .gpu    # .gpu/c1 .. c6, each < 60 MiB: wheels, data, model parts
#   run(carry=[".gpu/c1"], "SETUP_ONLY=1 bash scripts/device/gemma_grids.sh")   # install, smoke test
#   run(carry=[".gpu/c2"], "mkdir -p /tmp/g && cp -r .gpu/c2 /tmp/g/") ... c5 likewise
#   run(carry=[".gpu/c6"], "bash scripts/device/gemma_grids.sh 540")
#
# The last call rebuilds the model (sha256 of every part checked; every benchmark text's tokens checked to
# have been sent), then runs, each resumable, until the deadline (seconds, default 540): seed 0 of direction
# (a), seed 0 of (b), then seeds 1 and 2 of each -- so a cut leaves whole seeds. Training checkpoints are off
# (a run cut off there restarts), evaluation batches are 256 texts, fp32 matmuls may use TF32. What comes back
# ($OUT/<grid>.tar.gz): every run's small files (configs, batch logs, metrics, per-query tables), no weights,
# no TREC runs; at home, `hybridbatch compare CONFIG --report-only` writes the report from them.
set -u
budget=${1:-540}
t0=$(date +%s)
left() { echo $(( budget - ($(date +%s) - t0) )); }
G=/tmp/g  # outside the checkout: what a call carries into .gpu/ is gone at the next call, /tmp stays while warm
OUT=${OUT:-$G/out}
mkdir -p "$OUT" "$G"
for part in .gpu/c*; do [ -d "$part" ] && cp -r "$part" "$G/"; done
export HYBRIDBATCH_CACHE=$G/cache HYBRIDBATCH_LAREQA_DIR=$G/lareqa HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
  TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 PYTHONUNBUFFERED=1 PYTHONPATH=$G/site:$PWD/src
log() { echo "[$(date -u +%H:%M:%S) +$(( $(date +%s) - t0 ))s] $*"; }

if [ ! -f "$G/site/.done" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$G/site" \
    "$G"/c1/whl/*.whl && touch "$G/site/.done" || exit 3
fi
if [ ! -f "$G/lareqa/xquad-r/en.json" ]; then
  mkdir -p "$G/lareqa" && tar -xJf "$G/c1/lareqa.tar.xz" -C "$G/lareqa" || exit 3
fi
hb() { python3 -m hybridbatch.cli "$@"; }

if [ -n "${SETUP_ONLY:-}" ]; then
  log "setup"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, transformers, sentence_transformers as st, pydantic; print('torch', torch.__version__, torch.cuda.get_device_name(), 'transformers', transformers.__version__, 'st', st.__version__, 'pydantic', pydantic.VERSION)"
  # the whole path on the GPU with a tiny model: train (hard negatives, hybrid), evaluate, no report
  hb compare configs/demo.yaml 'base_models=[tiny]' 'samplers=[mono,hybrid]' train.steps=3 train.batch_size=8 \
    train.data.hard_negatives=1 train.precision=fp32 output_dir=$G/smoke --no-report --no-progress || exit 5
  log "smoke grid done"; ls $G/smoke/runs/tiny/*/*/eval/*/metrics.json
  exit 0
fi

if [ ! -f "$G/cache/models/embeddinggemma-300m/.complete" ]; then
  log "rebuild"; python3 scripts/device/rebuild_gemma.py "$G" || exit 4
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for phase in "xquad [0]" "mlqa [0]" "xquad [0,1,2]" "mlqa [0,1,2]"; do
  set -- $phase
  [ "$(left)" -gt 20 ] || break
  log "grid $1 seeds=$2 (${budget}s budget, $(left)s left)"
  timeout "$(left)" python3 -m hybridbatch.cli compare "configs/compare/paper-$1-gemma.yaml" "seeds=$2" \
    eval.batch_size=256 train.checkpoint.every=0 "output_dir=$G/runs/paper-$1-gemma" --no-report --no-progress 2>&1 \
    | grep -v -E "Loading weights|Batches:|it/s\]$"
  log "grid $1 seeds=$2 rc=${PIPESTATUS[0]}"
done
for grid in paper-xquad-gemma paper-mlqa-gemma; do
  [ -d "$G/runs/$grid" ] || continue
  (cd "$G" && find "runs/$grid" -type f ! -name .lock ! -path '*/checkpoints/*' ! -path '*/eval/*/runs/*' \
    \( ! -path '*/model/*' -o -name modules.json \) | tar czf "$OUT/$grid.tar.gz" -T -)
done
nvidia-smi --query-gpu=memory.used --format=csv,noheader
log "packed: $(ls -la "$OUT" | tail -n +2 | awk '{print $5, $9}' | tr '\n' ' ')"
