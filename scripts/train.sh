#!/usr/bin/env bash
# Reproduce the committed model: trains the pneumonia-xray CNN on PneumoniaMNIST and
# writes models/pneumonia-xray/2/model.onnx + model.json (run folder: training/runs/).
#
#   bash scripts/train.sh                                   # the committed model
#   bash scripts/train.sh --output-dir /tmp/m --epochs 2 --max-train-samples 500   # quick run
#   bash scripts/train.sh evaluate --model-dir models/pneumonia-xray/2             # its report
#   bash scripts/train.sh export --run-dir training/runs/<run>                      # re-export a run
#   bash scripts/train.sh train --help                      # every flag
#   bash scripts/train.sh adult                             # models/pneumonia-xray-adult/1 (below)
#   bash scripts/train.sh ct                                # models/covid-ct/1 and models/covid-ct-severity/1 (below)
#
# Data: $CXR_DATA_DIR (default ../shared/data next to the repository).
# The venv (.venv-training at the repository root) is created on first use.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh
ensure_venv .venv-training requirements/training.txt

export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

# The adult chest X-ray model: label files from adult-cxr/ (patient-grouped; one per held-out
# grouping), the shipped model and three leave-one-source-out models with the same recipe, then
# their figures and the held-out calibration of the unusual-image guard into the shipped card and
# training/reports/pneumonia-xray-adult-1/. About 40 min per model on 2 busy CPU cores.
train_adult() {
    local data="${CXR_DATA_DIR:-../shared/data}/adult-cxr" work="${ADULT_WORK_DIR:-/tmp/adult-cxr}"
    local held_out=(nih ieee8023 rsna-normal,ieee8023) flags=(
        --dataset image-csv --data-dir "$data"
        --classes '{"normal": {"name": "Normal", "finding": "No pneumonia detected"},
                    "pneumonia": {"name": "Pneumonia", "finding": "Pneumonia suspected"}}'
        --task "adult chest X-ray: normal vs pneumonia (including COVID-19 pneumonia)"
        --image-size 128 --equalize histogram --balance-sources true --architecture compact
        --filters 8,16,32,64 --rotation 0.03 --zoom 0.1 --translation 0.05 --shear 0.05 --brightness 0.1
        --epochs 20 --batch-size 32 --early-stopping-patience 5 --min-sensitivity 0.9 --verbose 0
    )
    mkdir -p "$work"
    .venv-training/bin/python training/prepare_adult_cxr.py --data-dir "$data" --out "$work/shipped.csv"
    .venv-training/bin/python -m trainer train "${flags[@]}" --labels-csv "$work/shipped.csv" \
        --output-dir models/pneumonia-xray-adult/1 "$@"
    local runs=()
    for sources in "${held_out[@]}"; do
        local name="${sources//,/+}"
        .venv-training/bin/python training/prepare_adult_cxr.py --data-dir "$data" --out "$work/$name.csv" --hold-out "$sources"
        .venv-training/bin/python -m trainer train "${flags[@]}" --labels-csv "$work/$name.csv" \
            --output-dir "$work/repository/held-out-$name/1" "$@"
        runs+=(--held-out "$sources=$work/repository/held-out-$name/1")
    done
    .venv-training/bin/python training/held_out_sources.py --model-dir models/pneumonia-xray-adult/1 \
        --data-dir "$data" --work-dir "$work" "${runs[@]}"
}
# The CT models: image layouts and splits (training/prepare_ct.py), self-supervised pretraining on
# chest images that are in no CT test split (training/pretrain.py), the COVID-19 model on both CT
# sets, two cross-source runs with the same recipe (train on one set, test on the other), the
# severity model; then the per-source and cross-source figures and the intended use into the cards,
# and the reports. About 15 min per model on 2 busy CPU cores (pretraining about 8 min).
train_ct() {
    local data="${CXR_DATA_DIR:-../shared/data}" work="${CT_WORK_DIR:-/tmp/ct}" covid=models/covid-ct/1
    local severity=models/covid-ct-severity/1 run
    local flags=(
        --dataset image-csv --image-size 64 --filters 16,32,64 --batch-norm-momentum 0.9 --batch-size 32
        --flip horizontal --brightness 0 --rotation 0.02 --zoom 0.05 --shear 0 --translation 0.05
        --learning-rate 0.0005 --balance-sources true --epochs 25
        --early-stopping-patience 6 --reduce-lr-patience 3 --embedding-baselines false --verbose 0
    )
    .venv-training/bin/python training/prepare_ct.py --data-dir "$data" --out "$work"
    .venv-training/bin/python training/pretrain.py --data-dir "$data" --out "$work/pretrained-64.npz" \
        --image-size 64 --filters 16,32,64 --epochs 8
    for run in both:"$covid" sars-to-covid-ct:"$work/repository/sars-to-covid-ct/1" \
        covid-ct-to-sars:"$work/repository/covid-ct-to-sars/1"; do
        .venv-training/bin/python -m trainer train "${flags[@]}" --init-weights "$work/pretrained-64.npz" \
            --data-dir "$work/${run%%:*}" \
            --labels-csv "$work/${run%%:*}/labels.csv" --classes "$work/classes-covid.json" --output-dir "${run#*:}" "$@"
    done
    # the severity model starts from random weights: the pretraining saw two of its held-out volumes
    .venv-training/bin/python -m trainer train "${flags[@]}" --equalize histogram --data-dir "$work/severity" \
        --labels-csv "$work/severity/labels.csv" --classes "$work/classes-severity.json" \
        --task "COVID-19 CT slice severity: mild, moderate or severe" --output-dir "$severity" "$@"
    for run in covid-ct:test_covid_ct sars-cov-2-ct:test_sars_cov_2_ct; do
        .venv-training/bin/python training/measure.py --model-dir "$covid" --layout "$work/${run%%:*}" --as "${run#*:}"
    done
    for run in sars-to-covid-ct covid-ct-to-sars; do
        .venv-training/bin/python training/measure.py --model-dir "$work/repository/$run/1" --layout "$work/$run" \
            --as "cross_source_${run//-/_}" --card "$covid"
    done
    .venv-training/bin/python training/card_sections.py --model-dir "$covid" --sections training/cards/covid-ct-1.json
    .venv-training/bin/python training/heatmap_vs_mask.py --model-dir "$severity" --layout "$work/severity"
    .venv-training/bin/python training/card_sections.py --model-dir "$severity" \
        --sections training/cards/covid-ct-severity-1.json
    .venv-training/bin/python -m trainer evaluate --model-dir "$covid" "${flags[@]}" --data-dir "$work/both" \
        --labels-csv "$work/both/labels.csv" --classes "$work/classes-covid.json"
    .venv-training/bin/python -m trainer evaluate --model-dir "$severity" "${flags[@]}" --equalize histogram \
        --data-dir "$work/severity" --labels-csv "$work/severity/labels.csv" --classes "$work/classes-severity.json" \
        --task "COVID-19 CT slice severity: mild, moderate or severe"
}
# `python -m trainer train|evaluate|export ...`; without a subcommand, train.
case "${1:-}" in
    adult) shift; train_adult "$@"; exit ;;
    ct) shift; train_ct "$@"; exit ;;
    train | evaluate | export | -h | --help) ;;
    *) set -- train "$@" ;;
esac
exec .venv-training/bin/python -m trainer "$@"
