"""Training examples of one split, gathered from the ingestion tables and the rendered targets.

Images and targets are the rendered PNGs at training resolution (``reconstruction`` is the image
itself), held in memory as uint8 arrays: 2000 shapes-world images are 25 MB per kind. Rows of every
task refer to image rows, so a batch is a gather.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from sgt_pipeline.training.instructions import CAPTION_QUESTION, instruction_for


@dataclass
class SplitExamples:
    """Everything the three tasks draw from, for one split."""

    image_ids: np.ndarray  # (N,)
    images: np.ndarray  # (N, H, W, 3) uint8 at training resolution
    targets: dict[str, np.ndarray]  # proxy kind -> (N, H, W, 3) uint8 (``reconstruction`` is ``images``)
    understanding: pd.DataFrame  # row, question, answer, type ("caption" for captioning)
    generation: pd.DataFrame  # row, prompt (a caption)

    def proxy(self, kind: str) -> pd.DataFrame:
        """Proxy examples of one kind: every image, with its instruction."""
        rows = np.arange(len(self.image_ids))
        return pd.DataFrame({"row": rows, "instruction": [instruction_for(kind, i) for i in rows]})

    def conversations(self, max_turns: int, seed: int = 0) -> pd.DataFrame:
        """Understanding examples packed per image: columns row, turns (a list of (question, answer)).

        Each image's items (questions and captions), in a seeded random order, are cut into conversations of
        at most ``max_turns`` turns; ``max_turns=1`` gives one single-turn conversation per item, in order.
        """
        items = self.understanding
        if max_turns == 1:
            return pd.DataFrame({"row": np.asarray(items["row"], dtype=np.int64),
                                 "turns": [[(q, a)] for q, a in zip(items["question"], items["answer"])]})
        rng = np.random.default_rng([seed, 0xC0])
        items = items.iloc[rng.permutation(len(items))]
        rows, turns = [], []
        for row, group in items.groupby("row", sort=True):
            pairs = list(zip(group["question"], group["answer"]))
            for start in range(0, len(pairs), max_turns):
                rows.append(row)
                turns.append(pairs[start:start + max_turns])
        return pd.DataFrame({"row": np.array(rows, dtype=np.int64), "turns": turns})


def load_split_examples(
    split: str,
    images: pd.DataFrame,
    qa: pd.DataFrame,
    captions: pd.DataFrame,
    targets_index: pd.DataFrame,
    targets: Mapping[str, Callable[[], np.ndarray]],
    proxy_kinds: list[str] | None = None,
    use_captions: bool = True,
) -> SplitExamples:
    """Gather one split. ``targets`` is the rendered-targets partitions (key -> loader), as Kedro's
    PartitionedDataset loads them; ``reconstruction`` must have been rendered (it is the image).
    ``proxy_kinds``: the target kinds to load (default: every kind that was rendered)."""
    ids = np.sort(images.loc[images["split"] == split, "image_id"].to_numpy())
    if not len(ids):
        raise ValueError(f"split {split!r} has no images")
    index = targets_index[targets_index["split"] == split]
    if proxy_kinds is None:
        proxy_kinds = sorted(set(index["kind"]))
    kinds = ["reconstruction", *[k for k in proxy_kinds if k != "reconstruction"]]
    arrays = {kind: _stack(kind, ids, index, targets) for kind in kinds}
    row_of = pd.Series(np.arange(len(ids)), index=ids)

    vqa = qa[qa["split"] == split]
    understanding = pd.DataFrame({"row": row_of[vqa["image_id"]].to_numpy(),
                                  "question": vqa["question"].to_numpy(),
                                  "answer": vqa["answer"].to_numpy(),
                                  "type": vqa["type"].to_numpy()})
    caps = captions[captions["split"] == split]
    if use_captions and len(caps):
        understanding = pd.concat([understanding, pd.DataFrame({
            "row": row_of[caps["image_id"]].to_numpy(), "question": CAPTION_QUESTION,
            "answer": caps["caption"].to_numpy(), "type": "caption"})], ignore_index=True)
    generation = pd.DataFrame({"row": row_of[caps["image_id"]].to_numpy(),
                               "prompt": caps["caption"].to_numpy()})
    # The reconstruction target is the image itself: the same array, under both names.
    return SplitExamples(ids, arrays["reconstruction"], arrays, understanding, generation)


def _stack(kind: str, ids: np.ndarray, index: pd.DataFrame,
           targets: Mapping[str, Callable[[], np.ndarray]]) -> np.ndarray:
    files = index[index["kind"] == kind].set_index("image_id")["target_file"]
    missing = [i for i in ids if i not in files.index]
    if missing:
        raise ValueError(f"no rendered '{kind}' target for image(s) {missing[:5]}: add '{kind}' to "
                         "rendering.kinds")
    keys = [files[i].removesuffix(".png") for i in ids]
    return np.stack([np.asarray(targets[k]())[..., :3] for k in tqdm(keys, desc=f"loading {kind}",
                                                                     leave=False)])
