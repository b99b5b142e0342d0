#!/usr/bin/env bash
# Transfer learning on a CPU: fine-tune an ImageNet backbone on FER2013 (a config of maintainers/configs/),
# put the PublicTest-selected checkpoint in the zoo and measure it as every zoo model is measured
# (maintainers/scripts/evaluate_shipped.sh: PublicTest, PrivateTest and all 7,178, with and without flip TTA,
# FER+ majority accuracy, the PublicTest calibrations of the `uncertain` flag).
#   bash maintainers/scripts/train_transfer.sh CONFIG [NAME] [DATA=../shared/data/fer2013]
#   e.g. bash maintainers/scripts/train_transfer.sh maintainers/configs/mobilenet_v2.yaml mobilenet_v2_64
# A run stopped part-way (a kill, the end of a working session) is resumed by the same command.
# The ImageNet weights must be there first: python -m ferlab.research.nets.mobilenet_v2 (see its docstring).
#   SKIP_TRAIN=1 bash maintainers/scripts/train_transfer.sh ...   # measure a run that has ended
set -euo pipefail
cd "$(dirname "$0")/../.."
export FERLAB_ZOO=${FERLAB_ZOO:-maintainers/zoo}
CONFIG=$1
NAME=${2:-$(basename "$CONFIG" .yaml)}
DATA=${3:-../shared/data/fer2013}
PY=${PYTHON:-.venv/bin/python}
run=runs/$NAME
if [[ -z "${SKIP_TRAIN:-}" ]]; then
  resume=()
  [[ -f "$run/last_state.pt" ]] && resume=(--resume)
  "$PY" -m ferlab train --config "$CONFIG" --data "$DATA" --out "$run" --quiet "${resume[@]}" >> "runs/$NAME.log" 2>&1
fi
best=$(python3 -c "import json; print(json.load(open('$run/best.json'))['epoch'])")
epochs=$(python3 -c "import json; print(json.load(open('$run/config.json'))['train']['epochs'])")
init=$(python3 -c "import json; c=json.load(open('$run/config.json')); z=c['train'].get('init_from'); p=c['model'].get('pretrained') or 'none'; print(f'fine-tuned from the zoo model {z}' if z else 'trained from random weights' if p == 'none' else 'fine-tuned from ImageNet')")
secs=$(python3 -c "import json; s=json.load(open('$run/summary.json')); print(round(s['train_seconds']))")
"$PY" maintainers/scripts/ship_model.py --checkpoint "$run/best.safetensors" --name "$NAME" --half \
  --note "$init on CPU with $CONFIG: bash maintainers/scripts/train_transfer.sh $CONFIG $NAME; $epochs epochs, $secs s; selected on PublicTest (epoch $best)"
bash maintainers/scripts/evaluate_shipped.sh "$DATA" "$NAME"
cp "$run/metrics.jsonl" "maintainers/benchmarks/results-transfer-$NAME.jsonl"  # the per-epoch record beside the zoo entry
