#!/bin/bash
# Issue 12: ship the two FER+-informed models trained by maintainers/scripts/train_ferplus_models.sh, then
# measure them the way every shipped model is measured (maintainers/scripts/evaluate_shipped.sh: five
# evaluations with the FER+ block, the PublicTest calibration for the `uncertain` flag), write
# their ONNX twins and regenerate README/MODEL_CARD.
#   bash maintainers/scripts/ship_ferplus_models.sh [RUNS=runs/ferplus-models] [DATA=../shared/data/fer2013]
set -euo pipefail
cd "$(dirname "$0")/../.."
export FERLAB_ZOO=${FERLAB_ZOO:-maintainers/zoo}  # model names (init_from, teachers) resolve in the zoo
RUNS=${1:-runs/ferplus-models}
DATA=${2:-../shared/data/fer2013}
PY=${PYTHON:-.venv/bin/python}
for name in fernet_ferplus fernet_votesmooth; do
  best=$(python3 -c "import json; print(json.load(open('$RUNS/$name/best.json'))['epoch'])")
  secs=$(python3 -c "import json; s=json.load(open('$RUNS/$name/summary.json')); print(round(s['train_seconds']))")
  $PY maintainers/scripts/ship_model.py --checkpoint "$RUNS/$name/best.safetensors" --name "$name" --half \
    --note "the shipped fernet fine-tuned on CPU (2 cores, one thread, beside the other run) with maintainers/configs/$name.yaml: bash maintainers/scripts/train_ferplus_models.sh; selected on PublicTest (epoch $best; $secs s)"
done
$PY maintainers/scripts/export_shipped_onnx.py
bash maintainers/scripts/evaluate_shipped.sh "$DATA" fernet_ferplus fernet_votesmooth
