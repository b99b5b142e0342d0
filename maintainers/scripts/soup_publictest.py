#!/usr/bin/env python3
"""Greedy weight soup of shipped fine-tunes, chosen on PublicTest only (issue 12).

    .venv/bin/python maintainers/scripts/soup_publictest.py --out runs/soup [--data ../shared/data/fer2013] [MODEL ...]

Every FER2013 model with vote-informed smoothing that ships (``fernet_votesmooth``,
``fernet_distill``, ``fernet_distill2``) is a fine-tune of the same network started from the
same weights (the shipped ``fernet``). Fine-tunes of one start usually lie in one basin of the
loss, so the average of their weights is a model in its own right, often better than any of
them, at the cost of one network per face: a "model soup" (Wortsman et al. 2022, greedy
recipe). An ensemble of the same models is as good or better but costs one network per member
per face, which the live pipeline cannot pay.

Greedy recipe: sort the candidates by their own PublicTest accuracy, start the soup with the
best, and add each next one if the uniform average of the soup's members so far plus it is at
least as accurate on PublicTest. Averaged weights leave BatchNorm's running statistics as
averages of statistics, not statistics of the averaged network, so each soup is measured twice:
as averaged, and with the statistics re-estimated on the un-augmented training faces
(``torch.optim.swa_utils.update_bn``, as SWA does); the variant with the higher PublicTest
accuracy is kept. PrivateTest is never read here; ``ferlab evaluate --model OUT/best.safetensors``
measures the chosen soup as every model is measured (maintainers/benchmarks/results-soup-eval.txt).

Writes OUT/best.safetensors + best.json (float32; the sidecar records the members, the choice
table and the rule) and prints the table (maintainers/benchmarks/results-soup-val.txt keeps it).
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from ferlab.research.data import resolve_data  # noqa: E402
from ferlab.research.data.dataset import FerSplit  # noqa: E402
from ferlab.errors import FerlabError  # noqa: E402
from ferlab.research.evaluation.predict import predict_logits  # noqa: E402
from ferlab.research.nets import load_checkpoint  # noqa: E402
from ferlab.research.nets.checkpoint import Checkpoint, save_checkpoint  # noqa: E402
from ferlab.models.hub import resolve_model, shipped_models  # noqa: E402
from ferlab.inference.preprocess import normalise  # noqa: E402

DEFAULT_TARGETS = "ferplus-smoothing"


def default_candidates() -> list[str]:
    """The shipped FER2013 models trained with vote-informed smoothing."""
    return [m.name for m in shipped_models()
            if m.meta.get("config", {}).get("train", {}).get("targets") == DEFAULT_TARGETS]


def accuracy(model: nn.Module, split: FerSplit, mean: float, std: float) -> float:
    logits = predict_logits(model, split.images, mean, std)
    return float((logits.argmax(1).numpy() == split.labels).mean())


def average(models: list[nn.Module]) -> nn.Module:
    """Uniform average of floating-point tensors (weights and BN statistics); integer buffers
    (BN's batch counter) are taken from the first member."""
    soup = copy.deepcopy(models[0])
    states = [m.state_dict() for m in models]
    mixed = {k: (torch.stack([s[k].float() for s in states]).mean(0) if v.is_floating_point() else v)
             for k, v in states[0].items()}
    soup.load_state_dict(mixed)
    return soup.eval()


def reestimate_bn(model: nn.Module, train: FerSplit, mean: float, std: float, batch_size: int = 512) -> nn.Module:
    """BatchNorm statistics of ``model`` itself on the un-augmented training faces
    (cumulative average over one pass, ``torch.optim.swa_utils.update_bn``)."""
    out = copy.deepcopy(model)
    images = np.asarray(train.images)  # (N, 48, 48) uint8, a model takes (N, 1, 48, 48)
    batches = (normalise(torch.from_numpy(np.array(images[i:i + batch_size]))[:, None], mean, std)
               for i in range(0, len(images), batch_size))
    with torch.no_grad():
        torch.optim.swa_utils.update_bn(batches, out)
    return out.eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="FER2013 folder or CSV (default $FERLAB_DATA)")
    ap.add_argument("--out", required=True, help="folder for best.safetensors + best.json")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    ap.add_argument("models", nargs="*", help=f"candidates (default: shipped models with targets {DEFAULT_TARGETS})")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.models or default_candidates()
    if len(names) < 2:
        raise FerlabError(f"a soup needs at least two candidates, got {names}")
    data = resolve_data(args.data)
    val, train = data.split("val"), data.split("train")
    ckpts: dict[str, Checkpoint] = {n: load_checkpoint(resolve_model(n)) for n in names}
    first = ckpts[names[0]]
    for n, c in ckpts.items():
        if c.meta["model"] != first.meta["model"] or (c.mean, c.std) != (first.mean, first.std):
            raise FerlabError(f"{n} is not the same network and normalisation as {names[0]}: cannot average")
    mean, std = first.mean, first.std
    lines = [f"PublicTest ({len(val)} faces), no TTA; greedy soup of {', '.join(names)}"]
    alone = {n: accuracy(c.model, val, mean, std) for n, c in ckpts.items()}
    order = sorted(names, key=lambda n: -alone[n])
    for n in order:
        lines.append(f"  alone  {n:<52} {100 * alone[n]:6.2f}%")
    members = [order[0]]
    best_model, best_acc, best_bn = ckpts[order[0]].model, alone[order[0]], "as trained"
    for n in order[1:]:
        trial = members + [n]
        soup = average([ckpts[m].model for m in trial])
        acc_avg = accuracy(soup, val, mean, std)
        soup_bn = reestimate_bn(soup, train, mean, std)
        acc_bn = accuracy(soup_bn, val, mean, std)
        label = " + ".join(trial)
        lines.append(f"  soup   {label:<52} {100 * acc_avg:6.2f}%  (BN re-estimated {100 * acc_bn:6.2f}%)")
        acc, model, bn = (acc_bn, soup_bn, "re-estimated on train") if acc_bn > acc_avg \
            else (acc_avg, soup, "averaged")
        if acc >= best_acc:
            members, best_model, best_acc, best_bn = trial, model, acc, bn
            lines.append(f"         kept: {label} ({bn} BN statistics)")
    lines.append(f"chosen: {' + '.join(members)}, BN statistics {best_bn}, PublicTest {100 * best_acc:.2f}%")
    print("\n".join(lines), flush=True)
    if len(members) == 1:
        print("no soup beat the best single model on PublicTest; nothing written")
        return 1
    meta = copy.deepcopy(first.meta)
    for key in ("metrics", "calibration", "notes", "dtype", "ferlab_version", "train_images"):
        meta.pop(key, None)
    meta["config"]["name"] = Path(args.out).name
    meta["soup"] = {"members": members, "candidates": names, "bn_statistics": best_bn,
                    "rule": "greedy soup (Wortsman et al. 2022): candidates by PublicTest accuracy, a member kept "
                            "if the uniform weight average is at least as accurate on PublicTest",
                    "publictest_table": lines}
    meta["metrics"] = {"val": {"accuracy": best_acc, "split": "PublicTest", "n": len(val)}}
    meta["epoch"] = None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "best.safetensors", best_model, meta)
    print(f"wrote {out / 'best.safetensors'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
