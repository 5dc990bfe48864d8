"""Compare training throughput of the hand-written ResNet/ResNeXt with timm's.

Each step is a forward pass, a backward pass and an AdamW update on a random batch, with model
and input in channels_last. Both networks of a pair are warmed up, then timed in alternating
rounds in the same process, so that drift in machine load affects both alike. The script
prints images per second (median over rounds) for each network and the ratio hand/timm.

Usage: python benchmarks/bench_hand_vs_timm.py [--device cpu] [--steps 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import timm
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from catsdogs.models import build_model  # noqa: E402

ARCHS = ("resnet50", "resnext50_32x4d")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_trainer(model: nn.Module, batch_size: int, image_size: int, device: torch.device):
    model = model.to(device=device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    images = torch.randn(batch_size, 3, image_size, image_size, device=device)
    images = images.contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, 2, (batch_size, 1), device=device).float()

    def step() -> None:
        loss = nn.functional.binary_cross_entropy_with_logits(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def time_steps(step, steps: int, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return time.perf_counter() - start


def benchmark_pair(arch: str, args: argparse.Namespace, device: torch.device) -> tuple[float, float]:
    """Return the median images/s of the hand-written and the timm network `arch`."""
    torch.manual_seed(0)
    trainers = {
        "hand": make_trainer(build_model(f"hand/{arch}", num_classes=1), args.batch_size, args.image_size, device),
        "timm": make_trainer(
            timm.create_model(arch, pretrained=False, num_classes=1), args.batch_size, args.image_size, device
        ),
    }
    for step in trainers.values():
        time_steps(step, args.warmup, device)

    rates: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(args.rounds):
        for name, step in trainers.items():
            seconds = time_steps(step, args.steps, device)
            rates[name].append(args.steps * args.batch_size / seconds)
    return statistics.median(rates["hand"]), statistics.median(rates["timm"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    parser.add_argument("--batch-size", type=int, default=16, help="images per step")
    parser.add_argument("--image-size", type=int, default=128, help="input height and width in pixels")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per network before timing")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per network and round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds; the median is reported")
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS, help="networks to compare")
    args = parser.parse_args(argv)
    device = torch.device(args.device)

    print(
        f"device={device} torch={torch.__version__} timm={timm.__version__} threads={torch.get_num_threads()} "
        f"batch={args.batch_size} size={args.image_size} warmup={args.warmup} steps={args.steps} rounds={args.rounds}"
    )
    for arch in args.archs:
        hand_rate, timm_rate = benchmark_pair(arch, args, device)
        print(f"{arch:18s} hand {hand_rate:8.1f} img/s  timm {timm_rate:8.1f} img/s  hand/timm {hand_rate / timm_rate:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
