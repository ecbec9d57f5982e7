#!/usr/bin/env bash
# One table comparing the inference service with its baselines (CPU only, a few minutes):
# raw onnxruntime, a no-op FastAPI endpoint, this service with batching off and on, and
# Keras predict behind FastAPI, for the committed model and a VGG-style CNN at 300x300.
#
#   bash scripts/benchmark_inference.sh [--requests 200] [--heavy-requests 48]
#
# Runs in .venv-training: row (d) and building the VGG-style model need Keras; the service is
# installed there (editable) by this script.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh
ensure_venv .venv-training requirements/training.txt
# the service itself, beside Keras (the training environment does not carry it otherwise)
.venv-training/bin/python -m pip install --quiet -e services/inference 2> >(grep -v "is ignored: it is neither" >&2)

export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
exec .venv-training/bin/python benchmarks/inference_benchmark.py "$@"
