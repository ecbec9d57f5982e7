#!/usr/bin/env bash
# One table comparing the inference service with its baselines (CPU only, a few minutes):
# raw onnxruntime, a no-op FastAPI endpoint, this service with batching off and on, and
# Keras predict behind FastAPI, for the committed model and a VGG-style CNN at 300x300.
#
#   bash scripts/benchmark_inference.sh [--requests 200] [--heavy-requests 48]
#
# Runs in .venv-training: row (d) and building the VGG-style model need Keras; the
# service's own dependencies come with its editable install there.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh
ensure_venv .venv-training requirements/training.txt

export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
exec .venv-training/bin/python benchmarks/inference_benchmark.py "$@"
