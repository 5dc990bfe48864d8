"""Compare training throughput of the from-scratch CPU networks against ResNet-18 at full size.

The baseline is the hand-written ResNet-18 at the full training size (64 px by default). The
other rows are the half-width ResNet-18 of the `cpu_scratch` recipe at the full size and at
the smaller sizes that progressive resizing starts from. Each step is a forward pass, a
backward pass and an AdamW update on a random channels_last batch. All rows are timed in
alternating rounds in one process, and the script prints the median images per second and
the ratio to the baseline.

Usage: python benchmarks/bench_scratch_speed.py [--device cpu] [--steps 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_hand_vs_timm import make_trainer, time_steps  # noqa: E402
from catsdogs.models import build_model  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step")
    parser.add_argument("--image-size", type=int, default=64, help="full training size in pixels")
    parser.add_argument("--small-sizes", type=int, nargs="+", default=[48, 56],
                        help="smaller sizes to time the half-width network at, in pixels")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per row before timing")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row and round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds; the median is reported")
    args = parser.parse_args(argv)
    device = torch.device(args.device)

    rows = [("hand/resnet18", args.image_size), ("hand/resnet18_half", args.image_size)]
    rows += [("hand/resnet18_half", size) for size in args.small_sizes]
    torch.manual_seed(0)
    trainers = [make_trainer(build_model(name, num_classes=1), args.batch_size, size, device) for name, size in rows]
    for step in trainers:
        time_steps(step, args.warmup, device)

    rates: list[list[float]] = [[] for _ in rows]
    for _ in range(args.rounds):
        for index, step in enumerate(trainers):
            rates[index].append(args.steps * args.batch_size / time_steps(step, args.steps, device))

    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} batch={args.batch_size} "
          f"warmup={args.warmup} steps={args.steps} rounds={args.rounds}")
    baseline = statistics.median(rates[0])
    for (name, size), measured in zip(rows, rates):
        rate = statistics.median(measured)
        print(f"{name:20s} {size:4d} px {rate:8.1f} img/s  ratio to resnet18 at {args.image_size} px {rate / baseline:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
