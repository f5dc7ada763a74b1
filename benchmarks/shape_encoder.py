"""How many examples the embedded default's understanding encoder needs to tell the world's shapes apart.

The tiny default's counting, POPE, 2-D relation and depth-order questions all name objects by shape, and
the stock encoder's base answered them at chance (docs/embedded_default.md). This benchmark isolates the encoder from the rest
of the UMM: it trains, on the same images, labels and optimizer,

- transformers' stock `JanusVisionModel` (linear patch embedding + ViT layers) at the widths of
  `conf/base/parameters_pretrain.yml`, with a linear head on its mean token,
- the same encoder with the default's convolutional stem (`models.stem`) in place of the linear patchify,
- a small CNN baseline (four 3x3 conv layers, ~0.13 M parameters),

to predict which of the world's categories an image holds (multi-label, from the COCO annotations via
pycocotools), on a world of `--train` distinct images generated for this run, and reports held-out
exact-set accuracy as samples are seen. Printed: the learning curves, the same-run ratio of each encoder's
final exact-set accuracy to the CNN's, each one's samples/s, and the samples each needed to reach
`--target` (or that it did not). `--plot` writes the curves as a PNG.

    python benchmarks/shape_encoder.py [--train 2000] [--samples 40000] [--threads 2] [--plot curves.png]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: no spinning OpenMP threads

import argparse
import tempfile
import time
from pathlib import Path

import torch
import yaml
from PIL import Image
from pycocotools.coco import COCO
from torch import nn
from transformers import JanusVisionModel

from sgt_pipeline.evaluation.evaluate import category_presence
from sgt_pipeline.models import TinyJanusConfig, build_processor
from sgt_pipeline.models.config import janus_config
from sgt_pipeline.models.stem import install_stem
from sgt_pipeline.models.tokenizer import build_word_tokenizer
from sgt_pipeline.world import WorldConfig, generate_world, vocabulary

ROOT = Path(__file__).resolve().parents[1]


def load_split(root: Path, split: str, processor) -> tuple[torch.Tensor, torch.Tensor]:
    """Processor-normalised pixels (N, 3, S, S) and category-presence labels (N, K) of one split."""
    coco = COCO(str(root / "annotations" / f"instances_{split}.json"))
    image_ids = sorted(coco.getImgIds())
    images = [Image.open(root / "images" / split / Path(info["file_name"]).name).convert("RGB")
              for info in coco.loadImgs(image_ids)]
    pixels = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    return pixels, torch.from_numpy(category_presence(coco, image_ids)).float()


class EncoderClassifier(nn.Module):
    def __init__(self, encoder: JanusVisionModel, num_labels: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(pixel_values=pixels).last_hidden_state.mean(1))


def cnn_baseline(num_labels: int) -> nn.Module:
    layers, channels = [], [3, 32, 64, 64, 128]
    for i, (cin, cout) in enumerate(zip(channels, channels[1:])):
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
        layers.append(nn.MaxPool2d(2) if i < len(channels) - 2 else nn.AdaptiveAvgPool2d(1))
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels[-1], num_labels))


@torch.no_grad()
def exact_set_accuracy(model: nn.Module, pixels: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    predicted = torch.cat([model(pixels[i:i + 256]) for i in range(0, len(pixels), 256)]) > 0
    model.train()
    return float((predicted == labels.bool()).all(1).float().mean())


def learning_curve(model, train, val, samples, every, lr, warmup_steps, seed):
    """[(samples seen, held-out exact-set accuracy)] and training samples/s (evaluation excluded)."""
    (pixels, labels), generator = train, torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    curve, seen, train_seconds, batch = [(0, exact_set_accuracy(model, *val))], 0, 0.0, 32
    schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up (ViTs need one), then constant
        optimizer, lambda step: min(1.0, (step + 1) / warmup_steps))
    while seen < samples:
        start = time.perf_counter()
        rows = torch.randint(len(pixels), (batch,), generator=generator)
        loss = nn.functional.binary_cross_entropy_with_logits(model(pixels[rows]), labels[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        train_seconds += time.perf_counter() - start
        seen += batch
        if seen % every < batch:
            curve.append((seen, exact_set_accuracy(model, *val)))
            print(f"    {seen:>7} samples  exact-set accuracy {curve[-1][1]:.3f}  loss {loss.item():.3f}", flush=True)
    return curve, seen / train_seconds


def samples_to_reach(curve, target):
    return next((seen for seen, accuracy in curve if accuracy >= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=2000, help="distinct training images (the default world: 2000)")
    parser.add_argument("--val", type=int, default=512)
    parser.add_argument("--samples", type=int, default=60000, help="training samples per model")
    parser.add_argument("--every", type=int, default=5000, help="evaluate every this many samples")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=200, help="linear warm-up steps (batch 32)")
    parser.add_argument("--target", type=float, default=0.7, help="exact-set accuracy to count samples to")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, help="write the learning curves to this PNG")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    world_params = yaml.safe_load((ROOT / "conf/base/parameters_world.yml").read_text())["world"]
    tiny = TinyJanusConfig(**yaml.safe_load((ROOT / "conf/base/parameters_pretrain.yml").read_text())["model"]["tiny"])
    with tempfile.TemporaryDirectory() as tmp:
        world = WorldConfig(**{**world_params, "root": tmp, "splits": {"train": args.train, "val": args.val}})
        generate_world(world, progress=False)
        tokenizer = build_word_tokenizer(vocabulary(world))  # only the processor and config need one
        processor = build_processor(tokenizer, tiny.image_size, tiny.num_image_tokens)
        train, val = (load_split(Path(tmp), split, processor) for split in ("train", "val"))

    label_sets, counts = torch.unique(train[1], dim=0, return_counts=True)
    commonest = label_sets[counts.argmax()]
    majority = float((val[1] == commonest).all(1).float().mean())
    print(f"world: {args.train} train / {args.val} val images, categories {world.categories}; held-out "
          f"exact-set accuracy of always answering the commonest training label set: {majority:.3f}")

    torch.manual_seed(tiny.seed)
    with_stem = janus_config(tiny.model_copy(update={"vision_stem_channels": tiny.vision_stem_channels or [32, 64, 128]}),
                             tokenizer).vision_config
    stock = janus_config(tiny.model_copy(update={"vision_stem_channels": None}), tokenizer).vision_config
    stem_encoder = JanusVisionModel(with_stem)
    install_stem(stem_encoder)
    models = {
        "Janus ViT, linear patchify (stock)": EncoderClassifier(JanusVisionModel(stock), val[1].shape[1]),
        "Janus ViT, conv stem (the default)": EncoderClassifier(stem_encoder, val[1].shape[1]),
        "CNN baseline": cnn_baseline(val[1].shape[1]),
    }
    results = {}
    for name, model in models.items():
        parameters = sum(p.numel() for p in model.parameters())
        print(f"  {name}: {parameters / 1e6:.2f} M parameters")
        results[name] = learning_curve(model, train, val, args.samples, args.every, args.lr, args.warmup, args.seed)

    print(f"\n{'model':<36}{'final exact-set':>16}{'samples/s':>11}{f'samples to {args.target:.2f}':>18}")
    for name, (curve, rate) in results.items():
        reached = samples_to_reach(curve, args.target)
        print(f"{name:<36}{curve[-1][1]:>16.3f}{rate:>11.0f}{reached if reached else 'not reached':>18}")
    (vit_curve, _), (stem_curve, _), (cnn_curve, _) = results.values()
    for name, curve in (("stock ViT", vit_curve), ("conv-stem ViT", stem_curve)):
        print(f"ratio {name} / CNN final exact-set accuracy: {curve[-1][1] / max(cnn_curve[-1][1], 1e-9):.2f} "
              f"(commonest label set {majority:.3f}, after {args.samples} samples each)")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for name, (curve, _) in results.items():
            ax.plot(*zip(*curve), marker="o", label=name)
        ax.axhline(majority, color="gray", linestyle="--", label="commonest label set")
        ax.set(xlabel="training samples", ylabel="held-out exact-set accuracy", ylim=(0, 1),
               title=f"Which shapes are in the image? ({args.train} training images)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"curves: {args.plot}")


if __name__ == "__main__":
    main()
