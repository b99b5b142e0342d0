#!/usr/bin/env bash
# One device call: train the thesis ResNet-18 on the GPU and bring back fp16 weights + logs.
# Run from the repo root there, with .devdata/fer2013.npz carried (maintainers/scripts/pack_data.py); the
# call fits in 64 MiB only after `bash maintainers/scripts/device_tree.sh slim` (restore it afterwards).
#   TRAIN_SECONDS: hard cap on training time (the best-on-PublicTest checkpoint so far is kept)
set -u
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
RUN=/tmp/ferlab-run
(command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader ) | tee "$OUT/device.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" | tee -a "$OUT/device.txt"
DATA=$(python3 maintainers/scripts/pack_data.py --unpack .devdata/fer2013.npz --to /tmp/ferlab-fer2013) || exit 5
start=$(date +%s)
timeout "${TRAIN_SECONDS:-330}" python3 -m ferlab train --config maintainers/configs/thesis.yaml --data "$DATA" \
  --out "$RUN" --device ${DEV:-cuda} --pretrained none --quiet "$@" > "$OUT/train.log" 2>&1
echo "train exit $? after $(( $(date +%s) - start )) s" | tee -a "$OUT/train.log"
python3 - "$RUN" "$OUT" <<'PY'
import json, shutil, sys
from pathlib import Path
run, out = Path(sys.argv[1]), Path(sys.argv[2])
sys.path.insert(0, "src")
from ferlab.research.nets import load_checkpoint, save_checkpoint
ck = load_checkpoint(run / "best.safetensors")
save_checkpoint(out / "resnet18.safetensors", ck.model, ck.meta, half=True)
for f in ("metrics.csv", "config.json", "curves.png"):
    if (run / f).exists():
        shutil.copy(run / f, out / f)
print("best:", json.dumps(ck.meta.get("metrics")), "epoch", ck.meta.get("epoch"))
PY
cd "$OUT" && [ -f resnet18.safetensors ] && split -b 15m resnet18.safetensors resnet18.safetensors.part- && rm resnet18.safetensors
ls -la "$OUT"
