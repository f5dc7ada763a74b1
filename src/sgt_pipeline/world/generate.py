"""Generating the shapes world on disk: images, depth maps, COCO annotations, captions, VQA, manifest.

The dataset is built beside ``root`` and swapped in at the end (``sgt_pipeline.io.atomic_directory``), so a
reader never sees a half written dataset nor stale images of an earlier, larger configuration. Images are built in parallel
worker processes; each image draws only from its own random streams, so the output does not depend on
the number of workers or the order of work.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from sgt_pipeline.io import atomic_directory

from .annotations import coco_categories, encoding_of, instance_annotations
from .captions import scene_captions
from .config import WorldConfig
from .questions import PRESENCE, QUESTION_TYPES, scene_questions
from .scene import sample_scene
from .writing import json_bytes, jsonl_bytes, png_bytes, split_paths, write_file

logger = logging.getLogger(__name__)

# Separate random streams per image: e.g. changing the caption settings leaves the images unchanged.
_SCENE_STREAM, _TEXT_STREAM, _ENCODING_STREAM = 0, 1, 2
LICENSE = {"id": 1, "name": "synthetic, no restrictions", "url": ""}
_IMAGES_PER_WORKER_MIN = 200  # below this many images a worker pool costs more than it saves
_CHUNK = 32  # images per task sent to a worker


def image_rng(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
    """Random stream of one image, independent of generation order (crc32: stable across processes)."""
    return np.random.default_rng([seed, zlib.crc32(split.encode()), index, stream])


@dataclass
class ImageRecord:
    """Everything one image contributes to its split's annotation files (ids assigned later)."""

    image: dict
    annotations: list[dict]
    captions: list[str]
    questions: list[dict]
    dropped_objects: int


def build_image(config: WorldConfig, split: str, index: int, image_id: int, paths: dict) -> ImageRecord:
    """Sample, render and write one image and its depth map; return its annotations."""
    scene = sample_scene(config, image_rng(config.seed, split, index, _SCENE_STREAM))
    if not scene.objects:
        raise ValueError(
            f"no object fits a {config.image_size}px image with min_visible_area={config.min_visible_area}; "
            "raise min_radius or image_size"
        )
    file_name = f"{image_id:012d}.png"
    write_file(os.path.join(paths["images_dir"], file_name), png_bytes(scene.image))
    write_file(os.path.join(paths["depth_dir"], file_name), png_bytes(scene.depth_map))
    size = config.image_size
    image = {"id": image_id, "file_name": file_name, "width": size, "height": size, "license": LICENSE["id"]}
    encoding_rng = image_rng(config.seed, split, index, _ENCODING_STREAM)
    text_rng = image_rng(config.seed, split, index, _TEXT_STREAM)
    return ImageRecord(
        image=image,
        annotations=instance_annotations(scene, image_id, config, encoding_rng),
        captions=scene_captions(scene, config, text_rng),
        questions=scene_questions(scene, config, text_rng),
        dropped_objects=scene.dropped_objects,
    )


_worker_config: WorldConfig | None = None  # set once per worker process, not pickled per task


def _init_worker(config: WorldConfig) -> None:
    global _worker_config
    _worker_config = config


def _build_chunk(task: tuple[str, int, int, int, dict]) -> list[ImageRecord]:
    split, first_index, stop_index, first_image_id, paths = task
    return [
        build_image(_worker_config, split, index, first_image_id + index - first_index, paths)
        for index in range(first_index, stop_index)
    ]


def _worker_count(requested: int | None, n_images: int) -> int:
    if multiprocessing.current_process().daemon:
        return 1  # e.g. inside a Kedro ParallelRunner worker: daemonic processes may not have children
    if requested is not None:
        return max(1, requested)
    return max(1, min(os.cpu_count() or 1, n_images // _IMAGES_PER_WORKER_MIN))


def _write_split(
    split: str, records: list[ImageRecord], paths: dict, config: WorldConfig, next_ids: Counter
) -> None:
    """Number annotations, captions and questions (ids continue across splits) and write the three files."""
    images, annotations, captions, questions = [], [], [], []
    for record in records:
        images.append(record.image)
        image_id = record.image["id"]
        for annotation in record.annotations:
            annotations.append({"id": next_ids["annotation"], **annotation})
            next_ids["annotation"] += 1
        for caption in record.captions:
            captions.append({"id": next_ids["caption"], "image_id": image_id, "caption": caption})
            next_ids["caption"] += 1
        for item in record.questions:
            questions.append({"question_id": next_ids["question"], "image_id": image_id, **item})
            next_ids["question"] += 1
    info = {"description": "sgt-pipeline shapes world", "version": "1.0", "seed": config.seed, "split": split}
    instances = {"info": info, "licenses": [LICENSE], "images": images, "annotations": annotations,
                 "categories": coco_categories(config)}
    write_file(paths["instances_json"], json_bytes(instances))
    captions_doc = {"info": info, "licenses": [LICENSE], "images": images, "annotations": captions}
    write_file(paths["captions_json"], json_bytes(captions_doc))
    write_file(paths["vqa_jsonl"], jsonl_bytes(questions))


def _count(stats: Counter, records: list[ImageRecord]) -> None:
    for record in records:
        stats["images"] += 1
        stats["objects"] += len(record.annotations)
        stats["captions"] += len(record.captions)
        stats["dropped_objects"] += record.dropped_objects
        stats.update(encoding_of(annotation["segmentation"]) for annotation in record.annotations)
        stats.update(f"qa_{item['type']}" for item in record.questions)
        stats.update(f"answer_{item['answer']}" for item in record.questions if item["answer"] in ("yes", "no"))


def summary_line(stats: Counter, seconds: float) -> str:
    qa = ", ".join(f"{kind} {stats[f'qa_{kind}']}" for kind in (*QUESTION_TYPES, PRESENCE) if stats[f'qa_{kind}'])
    encodings = ", ".join(f"{kind} {stats[kind]}" for kind in ("polygon", "compressed_rle", "uncompressed_rle"))
    return (
        f"shapes world: {stats['images']} images, {stats['objects']} objects ({encodings}), "
        f"{stats['captions']} captions, QA {qa} (yes {stats['answer_yes']} / no {stats['answer_no']}), "
        f"{stats['dropped_objects']} objects dropped, {seconds:.1f}s"
    )


def generate_world(config: WorldConfig, progress: bool = True, workers: int | None = None) -> dict:
    """Writes the dataset under config.root and returns the manifest (also written atomically to <root>/manifest.json).

    ``workers``: processes that build images (default: one per core, fewer for small configs); the
    files are byte-identical for any number of workers.
    """
    started = time.perf_counter()
    root, total = config.root, sum(config.splits.values())
    manifest = {"kind": "shapes", "root": root, "config": config.model_dump(mode="json"), "splits": {}}
    workers = _worker_count(workers, total)
    pool = multiprocessing.Pool(workers, _init_worker, (config,)) if workers > 1 else None
    stats, next_ids, first_image_id = Counter(), Counter(annotation=1, caption=1, question=1), 1
    try:
        # Built beside root and swapped in whole: no reader sees a half-written dataset or stale images
        # of an earlier, larger configuration.
        with atomic_directory(root) as built:
            building = str(built)
            try:
                os.makedirs(os.path.join(building, "annotations"))
                with tqdm(total=total, desc="shapes world", unit="img", disable=not progress) as bar:
                    for split, n_images in config.splits.items():
                        paths = split_paths(building, split)
                        os.makedirs(paths["images_dir"])
                        os.makedirs(paths["depth_dir"])
                        tasks = [
                            (split, start, min(start + _CHUNK, n_images), first_image_id + start, paths)
                            for start in range(0, n_images, _CHUNK)
                        ]
                        _init_worker(config)  # the in-process path reads the same module-level config
                        chunks = pool.imap(_build_chunk, tasks) if pool else map(_build_chunk, tasks)
                        records: list[ImageRecord] = []
                        for chunk in chunks:  # imap keeps task order: ids do not depend on scheduling
                            records += chunk
                            bar.update(len(chunk))
                        _write_split(split, records, paths, config, next_ids)
                        _count(stats, records)
                        first_image_id += n_images
                        manifest["splits"][split] = split_paths(root, split)
                write_file(os.path.join(building, "manifest.json"), json.dumps(manifest, indent=2).encode())
            except BaseException:
                if pool is not None:
                    pool.terminate()  # stop the workers before their directory is deleted
                raise
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    line = summary_line(stats, time.perf_counter() - started)
    logger.info(line)
    if progress:
        print(line, file=sys.stderr)
    return manifest
