#!/bin/bash
# Issue 12: fit vector scaling for a shipped FER2013 model on PublicTest (`ferlab calibrate --method vector`),
# ship the folded network as a new model, then measure it as every shipped model is measured
# (maintainers/scripts/evaluate_shipped.sh), write its ONNX twin and regenerate README/MODEL_CARD.
# Which source: the best held-out PublicTest accuracy after vector scaling without TTA in
# maintainers/benchmarks/results-recalibration-val.txt (maintainers/scripts/recalibration_publictest.py).
#   bash maintainers/scripts/ship_recalibrated_model.sh [SOURCE=fernet_distill2] [NAME=fernet_distill2_vs] [DATA=../shared/data/fer2013]
set -euo pipefail
cd "$(dirname "$0")/../.."
export FERLAB_ZOO=${FERLAB_ZOO:-maintainers/zoo}  # model names (init_from, teachers) resolve in the zoo
SOURCE=${1:-fernet_distill2}
NAME=${2:-${SOURCE}_vs}
DATA=${3:-../shared/data/fer2013}
PY=${PYTHON:-.venv/bin/python}
ckpt=runs/recalibrated/$NAME.safetensors
$PY -m ferlab calibrate --method vector --model "$SOURCE" --data "$DATA" --out "$ckpt"
$PY maintainers/scripts/ship_model.py --checkpoint "$ckpt" --name "$NAME" --half \
  --note "the shipped $SOURCE with vector scaling fitted on PublicTest's FER2013 labels and folded into its last layer: bash maintainers/scripts/ship_recalibrated_model.sh $SOURCE $NAME; no training"
$PY maintainers/scripts/export_shipped_onnx.py "$NAME"
bash maintainers/scripts/evaluate_shipped.sh "$DATA" "$NAME"
