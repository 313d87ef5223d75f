#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite plus the linter. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -z "${HYBRIDBATCH_LAREQA_DIR:-}" ] && [ -d ../shared/data/lareqa ]; then
  export HYBRIDBATCH_LAREQA_DIR="$(cd ../shared/data/lareqa && pwd)"
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/ruff check src tests benchmarks examples
.venv/bin/python -m pytest -q "$@"
