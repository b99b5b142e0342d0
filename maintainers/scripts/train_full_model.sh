#!/bin/bash
# Issue 12: train the compact FER2013 model in full (40 epochs from scratch on 2 cores: 2-2.7 h,
# plus about 40 min for the teachers' outputs on the first call, cached after it) with every
# recipe change that PublicTest chose in the fine-tune rounds (maintainers/configs/fernet_full.yaml), then
# ship it as every model is shipped: its sidecar and weights (maintainers/scripts/ship_model.py), its ONNX
# twin, the five evaluations and two calibrations (maintainers/scripts/evaluate_shipped.sh) and the docs.
# Whether it becomes the default is decided by PublicTest alone (ferlab.models.hub.default_model).
#   bash maintainers/scripts/train_full_model.sh [OUT=runs/full] [DATA=../shared/data/fer2013] [NAME=fernet_full]
#   A run stopped part-way (a session's end, a kill) is resumed by the same command.
#   SKIP_TRAIN=1 bash maintainers/scripts/train_full_model.sh    # ship a run that has already ended
set -euo pipefail
cd "$(dirname "$0")/../.."
export FERLAB_ZOO=${FERLAB_ZOO:-maintainers/zoo}  # model names (init_from, teachers) resolve in the zoo
OUT=${1:-runs/full}
DATA=${2:-../shared/data/fer2013}
NAME=${3:-fernet_full}
CONFIG=maintainers/configs/$NAME.yaml
PY=${PYTHON:-.venv/bin/python}
run=$OUT/run
if [[ -z "${SKIP_TRAIN:-}" ]]; then
  mkdir -p "$OUT"
  resume=()  # a stopped run continues exactly from its last finished epoch (last_state.pt)
  [[ -f "$run/last_state.pt" ]] && resume=(--resume)
  "$PY" -m ferlab train --config "$CONFIG" --data "$DATA" --out "$run" "${resume[@]}" >> "$OUT/train.log" 2>&1
fi
best=$(python3 -c "import json; print(json.load(open('$run/best.json'))['epoch'])")
epochs=$(python3 -c "import json; print(json.load(open('$run/config.json'))['train']['epochs'])")
secs=$(python3 -c "import json; s=json.load(open('$run/summary.json')); print(round(s['train_seconds']))")
"$PY" maintainers/scripts/ship_model.py --checkpoint "$run/best.safetensors" --name "$NAME" --half \
  --note "trained on CPU (2 cores) from scratch with $CONFIG: ferlab train --config $CONFIG --data ../shared/data/fer2013 --out $run (bash maintainers/scripts/train_full_model.sh); $epochs epochs, $secs s; selected on PublicTest (epoch $best)"
"$PY" maintainers/scripts/export_shipped_onnx.py "$NAME"
bash maintainers/scripts/evaluate_shipped.sh "$DATA" "$NAME"
