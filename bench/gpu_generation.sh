#!/usr/bin/env bash
# GPU variant of bench/bench_generation.py: naive per-prompt HF loop vs batched HFBackend vs
# VLLMBackend (when vLLM imports) on one CUDA device; writes a JSON result.
#
#   bench/gpu_generation.sh MODEL [OUT_JSON] [N_PROMPTS]
#
# MODEL: a local directory, a hub id (set HF_HUB_OFFLINE=0 to download) or a zoo name.
# Run with the interpreter of the venv that has vLLM for the vLLM row (PYTHON=.venv-vllm/bin/python).
# The naive loop runs on the first 64 prompts only (it is slow); ratios compare tokens/s.
set -euo pipefail
MODEL=${1:?usage: bench/gpu_generation.sh MODEL [OUT_JSON] [N_PROMPTS]}
OUT=${2:-results/bench/generation-gpu.json}
N=${3:-512}
PYTHON=${PYTHON:-.venv/bin/python}
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || { echo "no CUDA device" >&2; exit 2; }
exec "$PYTHON" bench/bench_generation.py --model "$MODEL" --device cuda --dtype bfloat16 \
  --n "$N" --naive-n 64 --max-new-tokens 128 --batch-size 64 --repeats 3 --json "$OUT"
