"""How local the tiny model's VQ tokenizer is, and what its round trip can reproduce at best.

A generated proxy target is a grid of VQ tokens; if one token depends on pixels far from its patch, a
model cannot paint an object without disturbing the rest, and the round trip caps what any generation can
score. For a trained base (`data/06_models/base` after `kedro run --pipeline pretrain`) and, as the
baseline measured in the same run, the same VQ architecture at its random initialisation, this prints

- locality: paint a small block of random colour into an instance target and count, per Chebyshev
  distance (in patches) from the edited patch, the share of tokens that changed;
- the round-trip ceiling on held-out instance targets: pixel accuracy and region IoU after palette
  decoding (`training.tokenizer.round_trip_quality`).

    python benchmarks/vq_locality.py [--base data/06_models/base] [--images 128] [--plot vq_locality.png]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: no spinning OpenMP threads

import argparse
import copy
from pathlib import Path

import numpy as np
import torch
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from sgt_pipeline.models.adapter import JanusAdapter
from sgt_pipeline.rendering import Palette
from sgt_pipeline.training.examples import load_split_examples
from sgt_pipeline.training.tokenizer import round_trip_quality

ROOT = Path(__file__).resolve().parents[1]


def changed_share_by_distance(adapter, targets: np.ndarray, block: int, seed: int) -> dict[int, float]:
    """Share of tokens that change when one block of pixels is repainted, by patch distance to it."""
    rng = np.random.default_rng(seed)
    size, grid = targets.shape[1], int(round(adapter.num_image_tokens ** 0.5))
    cell = size // grid
    edited = targets.copy()
    centres = []
    for image in edited:
        y, x = rng.integers(0, grid, 2)
        image[y * cell:y * cell + block, x * cell:x * cell + block] = rng.integers(0, 256, 3, dtype=np.uint8)
        centres.append((y, x))
    before = adapter.image_tokens(targets).reshape(-1, grid, grid).numpy()
    after = adapter.image_tokens(edited).reshape(-1, grid, grid).numpy()
    rows, cols = np.mgrid[:grid, :grid]
    changed: dict[int, list[bool]] = {}
    for k, (y, x) in enumerate(centres):
        distance = np.maximum(abs(rows - y), abs(cols - x))
        for d in np.unique(distance):
            changed.setdefault(int(min(d, 4)), []).extend((before[k] != after[k])[distance == d].tolist())
    return {d: float(np.mean(v)) for d, v in sorted(changed.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=ROOT / "data/06_models/base")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--block", type=int, default=4, help="side of the repainted block, pixels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    bootstrap_project(ROOT)
    with KedroSession.create(project_path=ROOT) as session:
        catalog = session.load_context().catalog
        data = {name: catalog.load(name) for name in ("images", "qa", "captions", "proxy_targets_index",
                                                      "proxy_targets", "palettes")}
    val = load_split_examples("val", data["images"], data["qa"], data["captions"], data["proxy_targets_index"],
                              data["proxy_targets"], ["instance"])
    targets = val.targets["instance"][:args.images]
    palette = Palette.from_dict(data["palettes"]["instance"])

    trained = JanusAdapter.from_pretrained(args.base)
    untrained = copy.deepcopy(trained)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        untrained.model.model.vqmodel.apply(untrained.model._init_weights)
    results = {}
    for name, adapter in (("trained VQ", trained), ("same VQ, random init (baseline)", untrained)):
        results[name] = (changed_share_by_distance(adapter, targets, args.block, args.seed),
                         round_trip_quality(adapter.model.model.vqmodel, targets, palette))

    distances = sorted(next(iter(results.values()))[0])
    header = "".join(f"{('d=' + str(d)) if d < 4 else 'd>=4':>8}" for d in distances)
    print(f"\nshare of tokens changed by repainting a {args.block}x{args.block} px block, by patch distance "
          f"({len(targets)} val instance targets)")
    print(f"{'VQ':<34}{header}{'pixel acc':>11}{'region IoU':>12}")
    for name, (shares, quality) in results.items():
        print(f"{name:<34}" + "".join(f"{shares[d]:>8.3f}" for d in distances)
              + f"{quality['pixel_accuracy']:>11.3f}{quality['region_iou']:>12.3f}")
    (trained_shares, _), (baseline_shares, _) = results.values()
    far = max(distances)
    print(f"ratio trained / baseline, share changed at the farthest ring: "
          f"{trained_shares[far] / max(baseline_shares[far], 1e-9):.2f}")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for name, (shares, quality) in results.items():
            ax.plot(distances, [shares[d] for d in distances], marker="o",
                    label=f"{name} (round-trip region IoU {quality['region_iou']:.2f})")
        ax.set(xlabel="distance from the edited patch (patches; last point: 4 or more)",
               ylabel="share of tokens changed", ylim=(0, 1), xticks=distances,
               title="VQ locality: does a small edit change far-away tokens?")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
