#!/usr/bin/env bash
# Measure zoo models (maintainers/zoo/, default: the ones in the box) on every reported split with `ferlab evaluate` and write the
# numbers into its sidecar (maintainers/scripts/ship_model.py --metrics-only) with the calibrations that the
# inference outputs' `uncertain` flag uses (`ferlab calibrate`, PublicTest; without and with flip TTA), then regenerate the docs.
# Usage: maintainers/scripts/evaluate_shipped.sh [DATA [NAME...]]   (default ../shared/data/fer2013, every shipped model)
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${1:-../shared/data/fer2013}
PY=${PYTHON:-.venv/bin/python}
export FERLAB_ZOO=${FERLAB_ZOO:-maintainers/zoo}
NAMES=("${@:2}")
[ ${#NAMES[@]} -gt 0 ] || read -r -a NAMES <<< "$($PY -c "from ferlab.models.hub import shipped_models; print(' '.join(m.meta['zoo_name'] for m in shipped_models()))")"
for name in "${NAMES[@]}"; do
  evals=()
  for spec in val: test: test-tta:flip test-all: test-all-tta:flip; do
    key=${spec%%:*}; tta=${spec#*:}; split=${key%-tta}
    out=runs/shipped-eval/$name-$key
    $PY -m ferlab evaluate --model "$name" --data "$DATA" --split "$split" ${tta:+--tta $tta} --out "$out" >/dev/null
    evals+=(--eval "$key=$out")
  done
  cal=runs/shipped-eval/$name.calibration.json
  $PY -m ferlab calibrate --model "$name" --data "$DATA" --out "$cal" >/dev/null
  cal_tta=runs/shipped-eval/$name.calibration-tta.json
  $PY -m ferlab calibrate --model "$name" --data "$DATA" --tta flip --out "$cal_tta" >/dev/null
  $PY maintainers/scripts/ship_model.py --name "$name" --metrics-only "${evals[@]}" --calibration "$cal" --calibration-tta "$cal_tta"
done
$PY maintainers/scripts/export_shipped_onnx.py  # the box's sidecars are copies of the zoo's
$PY maintainers/scripts/render_docs.py
