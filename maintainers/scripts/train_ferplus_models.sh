#!/bin/bash
# Issue 12: train the two FER+-informed models on CPU, both at once with one thread each
# (about an hour on 2 cores), then evaluate each on PrivateTest with the FER+ block.
#   bash maintainers/scripts/train_ferplus_models.sh [OUT=runs/ferplus-models]
set -euo pipefail
cd "$(dirname "$0")/../.."
export FERLAB_ZOO=${FERLAB_ZOO:-maintainers/zoo}  # model names (init_from, teachers) resolve in the zoo
OUT=${1:-runs/ferplus-models}
DATA=${FERLAB_DATA:-../shared/data/fer2013}
FERLAB=${FERLAB:-.venv/bin/ferlab}
mkdir -p "$OUT"
one() {
  local name=$1
  echo "$(date -u +%T) train $name"
  "$FERLAB" train --config "maintainers/configs/$name.yaml" --data "$DATA" --out "$OUT/$name" --quiet threads=1 \
    > "$OUT/$name.train.log" 2>&1
  echo "$(date -u +%T) evaluate $name"
  "$FERLAB" evaluate --model "$OUT/$name/best.safetensors" --data "$DATA" --split test \
    --out "$OUT/$name/eval-test" --device cpu > "$OUT/$name.eval.log" 2>&1
  echo "$(date -u +%T) done $name"
}
one fernet_ferplus & a=$!
one fernet_votesmooth & b=$!
wait $a; wait $b
echo "$(date -u +%T) ALL DONE"
