#!/usr/bin/env bash
# Reproduce the committed model: trains the pneumonia-xray CNN on PneumoniaMNIST and
# writes models/pneumonia-xray/2/model.onnx + model.json (run folder: training/runs/).
#
#   bash scripts/train.sh                                   # the committed model
#   bash scripts/train.sh --output-dir /tmp/m --epochs 2 --max-train-samples 500   # quick run
#   bash scripts/train.sh evaluate --model-dir models/pneumonia-xray/2             # its report
#   bash scripts/train.sh export --run-dir training/runs/<run>                      # re-export a run
#   bash scripts/train.sh train --help                      # every flag
#
# Data: $CXR_DATA_DIR (default ../shared/data next to the repository).
# The venv (.venv-training at the repository root) is created on first use.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh
ensure_venv .venv-training requirements/training.txt

export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# `python -m trainer train|evaluate|export ...`; without a subcommand, train.
case "${1:-}" in
    train | evaluate | export | -h | --help) ;;
    *) set -- train "$@" ;;
esac
exec .venv-training/bin/python -m trainer "$@"
