#!/bin/bash
# Issue 12: distil the config's teachers (fernet_votesmooth + resnet18) into the compact model.
# Two values of one setting train side by side, one thread each (about 60-70 min on 2 cores);
# the run with the higher PublicTest accuracy (val_acc, the selection metric) is then evaluated
# on PrivateTest. The teachers' outputs are computed once first and cached (src/ferlab/research/training/teachers.py).
#   bash maintainers/scripts/train_distilled_model.sh [OUT=runs/distill] [CONFIG=maintainers/configs/fernet_distill.yaml] \
#        [KEY=teacher_weight] [A=0.5] [B=0.8]
#   bash maintainers/scripts/train_distilled_model.sh runs/distill2 maintainers/configs/fernet_distill2.yaml scale "[1.0,1.0]" "[0.9,1.1]"
set -euo pipefail
cd "$(dirname "$0")/../.."
export FERLAB_ZOO=${FERLAB_ZOO:-maintainers/zoo}  # model names (init_from, teachers) resolve in the zoo
OUT=${1:-runs/distill}
CONFIG=${2:-configs/fernet_distill.yaml}
KEY=${3:-teacher_weight}
A=${4:-0.5}
B=${5:-0.8}
DATA=${FERLAB_DATA:-../shared/data/fer2013}
FERLAB=${FERLAB:-.venv/bin/ferlab}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
echo "$(date -u +%T) teachers"
"$PY" - "$DATA" "$CONFIG" <<'PY'
import sys
from ferlab.research.config import make_config
from ferlab.research.data import resolve_data
from ferlab.research.training.teachers import teacher_probs
t = make_config(sys.argv[2]).train
teacher_probs(t.teachers, resolve_data(sys.argv[1]).split("train"), tta=t.teacher_tta)
PY
tag() { echo "$KEY$1" | tr -c 'A-Za-z0-9.\n-' '_'; }  # a folder name for KEY=value
one() {
  local v=$1 t
  t=$(tag "$v")
  echo "$(date -u +%T) train $KEY=$v"
  "$FERLAB" train --config "$CONFIG" --data "$DATA" --out "$OUT/$t" --quiet threads=1 \
    "$KEY=$v" > "$OUT/$t.train.log" 2>&1
  echo "$(date -u +%T) done $KEY=$v"
}
one "$A" & a=$!
one "$B" & b=$!
wait $a; wait $b
best=$("$PY" -c "
import json, sys
runs = sys.argv[1:]
acc = {r: json.load(open(r + '/summary.json'))['best']['val_acc'] for r in runs}
for r, a in acc.items(): print(f'{r}: PublicTest {a:.4f}', file=sys.stderr)
print(max(acc, key=acc.get))" "$OUT/$(tag "$A")" "$OUT/$(tag "$B")")
echo "$(date -u +%T) chosen on PublicTest: $best"
echo "$best" > "$OUT/chosen.txt"
printf '%s\n' "$CONFIG" "$KEY" "$A" "$B" > "$OUT/choice.txt"  # for maintainers/scripts/ship_distilled_model.sh
"$FERLAB" evaluate --model "$best/best.safetensors" --data "$DATA" --split test \
  --out "$best/eval-test" --device cpu > "$OUT/eval.log" 2>&1
echo "$(date -u +%T) ALL DONE"
