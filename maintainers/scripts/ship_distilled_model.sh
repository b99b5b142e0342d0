#!/bin/bash
# Issue 12: ship the distilled FER2013 model that maintainers/scripts/train_distilled_model.sh chose on
# PublicTest, then measure it as every shipped model is measured (maintainers/scripts/evaluate_shipped.sh),
# write its ONNX twin and regenerate README/MODEL_CARD.
#   bash maintainers/scripts/ship_distilled_model.sh [RUNS=runs/distill] [DATA=../shared/data/fer2013] [NAME=fernet_distill]
#   bash maintainers/scripts/ship_distilled_model.sh runs/distill2 ../shared/data/fer2013 fernet_distill2
set -euo pipefail
cd "$(dirname "$0")/../.."
export FERLAB_ZOO=${FERLAB_ZOO:-maintainers/zoo}  # model names (init_from, teachers) resolve in the zoo
RUNS=${1:-runs/distill}
DATA=${2:-../shared/data/fer2013}
NAME=${3:-fernet_distill}
PY=${PYTHON:-.venv/bin/python}
run=$(cat "$RUNS/chosen.txt")
if [[ -f "$RUNS/choice.txt" ]]; then
  mapfile -t c < "$RUNS/choice.txt"  # config, key, the two values tried
else  # the first distillation run predates choice.txt
  c=(maintainers/configs/fernet_distill.yaml teacher_weight 0.5 0.8)
fi
v=$(python3 -c "import json, sys; d = json.load(open('$run/config.json')); print(d['train'].get('${c[1]}', d['augment'].get('${c[1]}')))")
init=$(python3 -c "import json; print(json.load(open('$run/config.json'))['train']['init_from'])")
best=$(python3 -c "import json; print(json.load(open('$run/best.json'))['epoch'])")
secs=$(python3 -c "import json; s=json.load(open('$run/summary.json')); print(round(s['train_seconds']))")
$PY maintainers/scripts/ship_model.py --checkpoint "$run/best.safetensors" --name "$NAME" --half \
  --note "the shipped $init fine-tuned on CPU (2 cores, one thread, beside the other run) with ${c[0]}, ${c[1]} $v, the better of ${c[2]} and ${c[3]} on PublicTest: bash maintainers/scripts/train_distilled_model.sh $RUNS ${c[0]} ${c[1]} \"${c[2]}\" \"${c[3]}\"; selected on PublicTest (epoch $best; $secs s)"
$PY maintainers/scripts/export_shipped_onnx.py "$NAME"
bash maintainers/scripts/evaluate_shipped.sh "$DATA" "$NAME"
