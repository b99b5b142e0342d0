"""Training throughput (images/s) of the thesis model and FerNet, as the trainer runs them.

    .venv/bin/python maintainers/benchmarks/bench_train.py                     # CPU: resnet18 (thesis) and fernet
    python3 maintainers/benchmarks/bench_train.py --device cuda --compile      # GPU: eager and torch.compile

One step is the trainer's own :func:`ferlab.research.training.engine.train_step` (on-device augmentation:
flip, rotation, translation, erasing; normalisation, forward, Eq. 15 loss, backward, gradient
clipping, optimizer step), with the thesis's label-smoothed targets (Eq. 15) and the optimizer from the trainer's factory and the
thesis config. On CUDA it uses the trainer's settings: bf16 autocast and channels_last
(``--compile`` adds a ``torch.compile`` row). Random data: throughput does not depend on pixels.

Wall time on a shared machine includes other processes' time, so the process's CPU time per
step and the load average are printed beside it. Batch sizes: 64 for the thesis model (Table 6),
128 for FerNet (maintainers/configs/fernet.yaml).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from ferlab.research.config import make_config  # noqa: E402
from ferlab.research.device import resolve_device  # noqa: E402
from ferlab.research.nets import create_from_config  # noqa: E402
from ferlab.research.training.engine import set_backbone_frozen, set_train_mode, train_step  # noqa: E402
from ferlab.research.training.loss import smoothed_targets  # noqa: E402
from ferlab.research.training.optim import create_optimizer  # noqa: E402

MODELS: dict[str, tuple[dict[str, Any], int]] = {
    "resnet18-thesis": ({"name": "resnet18", "pretrained": "none", "head": [256], "dropout": [0.5, 0.25],
                         "in_chans": 1, "stem": "thesis"}, 64),
    "fernet": ({"name": "fernet", "widths": [32, 64, 128, 256], "depths": [0, 1, 1, 1], "head": [256],
                "dropout": [0.5, 0.25]}, 128),
}


def bench(name: str, device: torch.device, steps: int, warmup: int, compile_model: bool,
          frozen: bool) -> dict[str, Any]:
    model_cfg, batch = MODELS[name]
    cfg = make_config()
    t_cfg = cfg.train
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = create_from_config(dict(model_cfg)).to(device)
    set_backbone_frozen(model, frozen)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    set_train_mode(model, frozen)
    fwd = torch.compile(model) if compile_model else model
    opt = create_optimizer(t_cfg, model.parameters())
    g = torch.Generator(device=device).manual_seed(0)
    data = torch.randint(0, 256, (batch * 8, 48, 48), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 7, (batch * 8,), device=device)
    targets = smoothed_targets(labels, 7, t_cfg.label_smoothing)
    mean, std = cfg.data.mean, cfg.data.std

    def step(i: int) -> None:
        idx = torch.arange(batch, device=device) + (i % 8) * batch
        train_step(fwd, model, opt, data[idx], targets[idx], None, augment=cfg.augment, generator=g, mean=mean,
                   std=std, amp=cuda, channels_last=cuda, grad_clip=t_cfg.grad_clip)

    t_first = time.perf_counter()
    for i in range(warmup):
        step(i)
    if cuda:
        torch.cuda.synchronize()
    warm_s = time.perf_counter() - t_first
    t, c = time.perf_counter(), time.process_time()
    for i in range(steps):
        step(i)
    if cuda:
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return {"model": name, "device": str(device), "batch": batch, "compile": compile_model, "frozen": frozen,
            "amp": "bf16" if cuda else "fp32", "channels_last": cuda, "threads": torch.get_num_threads(),
            "steps": steps, "images_per_s": round(steps * batch / wall, 1),
            "ms_per_step": round(wall / steps * 1000, 2), "cpu_ms_per_step": round(cpu / steps * 1000, 2),
            "warmup_s": round(warm_s, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma list of {', '.join(MODELS)}")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 5 on CPU, 100 on GPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2 / 20)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (GPU: minutes of compiling)")
    ap.add_argument("--frozen", action="store_true", help="also time the freeze phase (backbone frozen, Exp. 4)")
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args(argv)

    dev = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = dev.type == "cuda"
    steps = args.steps or (100 if cuda else 5)
    warmup = args.warmup if args.warmup is not None else (20 if cuda else 2)
    if cuda:
        torch.backends.cudnn.benchmark = True
        print(f"GPU: {torch.cuda.get_device_name(dev)}; torch {torch.__version__}")
    print(f"load average before: {os.getloadavg()}; cpus: {os.cpu_count()}; torch threads: {torch.get_num_threads()}")
    rows = []
    for name in [m for m in args.models.split(",") if m]:
        variants = [(False, False)] + ([(False, True)] if args.frozen else []) + ([(True, False)] if args.compile else [])
        for comp, frozen in variants:
            r = bench(name, dev, steps, warmup, comp, frozen)
            rows.append(r)
            print(f"{r['model']:<16} {r['device']:<6} batch {r['batch']:<4} {r['amp']:<5} compile={str(comp):<5} "
                  f"frozen={str(frozen):<5} {r['images_per_s']:>9.1f} img/s  {r['ms_per_step']:>8.1f} ms/step "
                  f"(process CPU {r['cpu_ms_per_step']:.1f} ms/step; warm-up {r['warmup_s']} s)", flush=True)
    print(f"load average after: {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
