#!/usr/bin/env bash
# Evaluate, on this (CPU) machine, what maintainers/scripts/gpu_train.sh returned from the GPU machine.
#
#   bash maintainers/scripts/eval_gpu_run.sh FILES_DIR [DEST]
#
# FILES_DIR: the tool's files_at folder (gpu_train.log, results.tar.gz, best_seed42.safetensors.part00..,
# best_seed42.sha256). DEST (default runs/gpu-thesis): gets experiments/ (the suite tree, tables
# rebuilt here) and seed42/best.safetensors + best.json (the checkpoint, usable with --model).
# Then `ferlab evaluate` on PrivateTest (test) and all 7,178 test faces (test-all), with and without
# flip TTA; reports land in DEST/eval-<split>[-tta]/. EVAL_SPLITS="val" gives a quick rehearsal.
set -euo pipefail
cd "$(dirname "$0")/../.."
FILES=${1:?usage: eval_gpu_run.sh FILES_DIR [DEST]}
DEST=${2:-runs/gpu-thesis}
DATA=${FERLAB_DATA:-../shared/data/fer2013}
FERLAB=${FERLAB:-$( [ -x .venv/bin/ferlab ] && echo .venv/bin/ferlab || echo ferlab )}

mkdir -p "$DEST"
tar -C "$DEST" -xzf "$FILES/results.tar.gz"
SHA=$(ls "$FILES"/best_seed*.sha256 | head -1)
SEED=$(basename "$SHA" .sha256); SEED=${SEED#best_seed}
CK="$DEST/seed$SEED"
mkdir -p "$CK"
cat "$FILES"/best_seed"$SEED".safetensors.part* > "$CK/best.safetensors"
WANT=$(awk '{print $1}' "$SHA"); GOT=$(sha256sum "$CK/best.safetensors" | awk '{print $1}')
if [ "$WANT" != "$GOT" ]; then echo "checkpoint parts do not reassemble to the GPU's file (sha256 $GOT != $WANT)"; exit 1; fi
# the JSON sidecar (model config, normalisation, selection metrics) travelled in the tarball
SIDE=$(ls "$DEST"/experiments/*/seed"$SEED"/best.json | head -1)
cp "$SIDE" "$CK/best.json"
echo "checkpoint: $CK/best.safetensors (sidecar from $SIDE)"

for split in ${EVAL_SPLITS:-test test-all}; do
  "$FERLAB" evaluate --model "$CK/best.safetensors" --data "$DATA" --split "$split" --out "$DEST/eval-$split"
  "$FERLAB" evaluate --model "$CK/best.safetensors" --data "$DATA" --split "$split" --tta flip --out "$DEST/eval-$split-tta"
done
"$FERLAB" experiments table --out "$DEST/experiments" >/dev/null
echo "suite table: $DEST/experiments/results.md"
