#!/usr/bin/env python3
"""Pack FER2013 into one small file that a device call can carry (64 MiB limit in all), and
unpack it on the other side into FER2013's own format, which ferlab reads.

    .venv/bin/python maintainers/scripts/pack_data.py                       # -> .devdata/fer2013.npz
    .venv/bin/python maintainers/scripts/pack_data.py --splits train,val    # without PrivateTest
    python3 maintainers/scripts/pack_data.py --unpack .devdata/fer2013.npz --to /tmp/fer2013   # on the GPU machine

The default packs all three usages (train, PublicTest, PrivateTest) so runs on the GPU machine
can be evaluated there too; ``.devdata/`` is git-ignored and travels with ``carry=[".devdata"]``.
After writing, the pack is read back and compared pixel for pixel with the source; after
unpacking, the unpacked dataset is loaded as ferlab loads it and compared with the pack. The
format is in ``maintainers/scripts/fer2013_pack.py``. ``--unpack`` prints the path to pass as ``--data``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from fer2013_pack import CODECS, load_packed, pack, unpack  # noqa: E402 - beside this script
from ferlab.research.data import FerData, load_fer2013  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "fer2013"


def _same(a: FerData, b: FerData) -> bool:
    keep = np.isin(a.usage, np.unique(b.usage))
    return (np.array_equal(b.images, a.images[keep]) and np.array_equal(b.labels, a.labels[keep])
            and np.array_equal(b.usage, a.usage[keep]))


def _unpack(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    data_path = unpack(args.unpack, args.to)
    print(f"unpacked {args.unpack} to {data_path} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    if not args.no_verify:
        t1 = time.perf_counter()
        same = _same(load_packed(args.unpack), load_fer2013(data_path))
        print(f"loaded back in {time.perf_counter() - t1:.1f} s: {'identical to the pack' if same else 'DIFFERENT'}",
              file=sys.stderr)
        if not same:
            return 1
    print(data_path)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("FERLAB_DATA", str(DEFAULT_DATA)),
                    help="FER2013 folder layout (or fer2013.csv with --codec xz/raw)")
    ap.add_argument("--out", default=str(REPO / ".devdata" / "fer2013.npz"))
    ap.add_argument("--splits", default="train,val,test", help="comma list of train, val, test")
    ap.add_argument("--codec", default="jpeg", choices=CODECS)
    ap.add_argument("--unpack", metavar="PACK", help="write PACK back as a FER2013 folder (jpeg) or fer2013.csv")
    ap.add_argument("--to", default="/tmp/fer2013", help="where --unpack writes (default /tmp/fer2013)")
    ap.add_argument("--no-verify", action="store_true", help="skip reading the result back")
    args = ap.parse_args(argv)
    if args.unpack:
        return _unpack(args)

    t0 = time.perf_counter()
    data = load_fer2013(args.data)
    info = pack(data, args.out, splits=[s for s in args.splits.split(",") if s], codec=args.codec,
                root=args.data)
    print(f"wrote {info['path']}: {info['bytes'] / 2**20:.2f} MiB, {info['images']} images "
          f"{info['usage_counts']}, codec {info['codec']}"
          + (f", {info['distinct_jpeg_headers']} distinct JPEG headers" if args.codec == "jpeg" else "")
          + f" ({time.perf_counter() - t0:.1f} s)")
    if not args.no_verify:
        t1 = time.perf_counter()
        same = _same(data, load_packed(args.out))
        print(f"read back in {time.perf_counter() - t1:.1f} s: {'identical to the source' if same else 'DIFFERENT'}")
        if not same:
            return 1
    if info["bytes"] > 56 * 2**20:
        print("warning: over 56 MiB; with the working tree this may not fit a 64 MiB device call",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
