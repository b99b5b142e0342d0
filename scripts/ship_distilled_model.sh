#!/bin/bash
# Issue 12: ship the distilled FER2013 model that scripts/train_distilled_model.sh chose on
# PublicTest as `fernet_distill`, then measure it as every shipped model is measured
# (scripts/evaluate_shipped.sh), write its ONNX twin and regenerate README/MODEL_CARD.
#   bash scripts/ship_distilled_model.sh [RUNS=runs/distill] [DATA=../shared/data/fer2013]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs/distill}
DATA=${2:-../shared/data/fer2013}
PY=${PYTHON:-.venv/bin/python}
run=$(cat "$RUNS/chosen.txt")
w=$(python3 -c "import json; print(json.load(open('$run/config.json'))['train']['teacher_weight'])")
best=$(python3 -c "import json; print(json.load(open('$run/best.json'))['epoch'])")
secs=$(python3 -c "import json; s=json.load(open('$run/summary.json')); print(round(s['train_seconds']))")
$PY scripts/ship_model.py --checkpoint "$run/best.safetensors" --name fernet_distill --half \
  --note "the shipped fernet fine-tuned on CPU (2 cores, one thread, beside the other teacher weight) with configs/fernet_distill.yaml, teacher_weight $w, the better of 0.5 and 0.8 on PublicTest: bash scripts/train_distilled_model.sh; selected on PublicTest (epoch $best; $secs s)"
$PY scripts/export_shipped_onnx.py fernet_distill
bash scripts/evaluate_shipped.sh "$DATA" fernet_distill
