"""Kedro pipelines end to end on tiny configurations: outputs, failure behaviour, the CLI as typed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import run_kedro
from sgt_pipeline.ingestion import InvalidDatasetError
from test_ingestion import BAD_INPUTS, break_fixture

TINY_WORLD = {"world": {"splits": {"train": 6, "val": 3}}}
# Two optimizer steps of each training phase: the wiring is under test here, not the learning.
TINY_TRAINING = {"pretrain": {"vq": {"steps": 2, "batch_size": 4}, "encoder": {"steps": 2, "batch_size": 4},
                              "base": {"global_batch": 4, "trainer": {"max_steps": 2}}},
                 "train": {"run": {"global_batch": 4, "trainer": {"max_steps": 2}}},
                 "evaluation": {"proxy_images": 2, "geneval_per_task": 1, "analysis_images": 3, "grid_images": 2}}
KINDS = ["reconstruction", "edge", "depth", "semantic", "instance", "panoptic"]


def _coco_source(paths: dict) -> dict:
    return {"source": {"kind": "coco", "splits": {"val": paths}},
            "rendering": {"kinds": ["semantic", "instance", "panoptic"]}}


def test_sgt_pipeline_on_tiny_world(kedro_project):
    run_kedro(kedro_project, "sgt", {**TINY_WORLD, **TINY_TRAINING})
    data = kedro_project / "data"
    images = pd.read_parquet(data / "02_intermediate/images.parquet")
    assert sorted(images["split"].value_counts().items()) == [("train", 6), ("val", 3)]
    index = pd.read_csv(data / "05_model_input/targets_index.csv")
    assert len(index) == 9 * len(KINDS) and set(index["kind"]) == set(KINDS)
    for row in index.itertuples():
        with Image.open(data / "05_model_input/targets" / row.target_file) as target:
            assert target.size == (64, 64) and target.mode == "RGB"
    palettes = json.loads((data / "05_model_input/palettes.json").read_text())
    assert set(palettes) == {"semantic", "instance", "panoptic"}
    summary = json.loads((data / "08_reporting/ingestion_summary.json").read_text())
    assert summary["success"] and summary["tables"]["images"] == 9
    assert "PASSED" in (data / "08_reporting/ingestion_report.md").read_text()
    base = json.loads((data / "06_models/base_model.json").read_text())
    sgt = json.loads((data / "06_models/sgt_model.json").read_text())
    assert base["path"] == "data/06_models/base" and sgt["base"] == base["path"]
    for model_dir in (data / "06_models/base", data / "06_models/sgt"):
        assert (model_dir / "model.safetensors").is_file() and (model_dir / "config.json").is_file()
    metrics = json.loads((data / "08_reporting/train_metrics.json").read_text())
    assert metrics["train/steps"] == 2 and np.isfinite(metrics["train/loss"])
    evaluation = json.loads((data / "08_reporting/eval_metrics.json").read_text())
    for key in ("und/count_acc", "und/pope_f1", "und/overall", "gen/geneval_overall", "proxy/instance_iou",
                "probe/acc_layer_0", "attention/image_share_mean"):
        assert np.isfinite(evaluation[key]) and 0 <= evaluation[key] <= 1, key
    answers = pd.read_parquet(data / "07_model_output/eval_answers.parquet")
    assert len(answers) > 3 and all(p in o.split("|") for p, o in zip(answers["prediction"], answers["options"]))
    with Image.open(data / "08_reporting/eval_samples.png") as grid:
        assert grid.size == (2 * 64 * 3, 4 * 64 * 3)
    assert "# Evaluation report" in (data / "08_reporting/eval_report.md").read_text()


def test_sgt_pipeline_on_real_coco_layout(kedro_project, tmp_path):
    """The `coco` source: the real-COCO-like fixture through ingestion and rendering at 32 px."""
    from coco_fixture import write_coco_fixture

    paths = write_coco_fixture(tmp_path / "coco")
    params = _coco_source(paths)
    params["rendering"]["image_size"] = 32
    run_kedro(kedro_project, ["world", "ingestion", "rendering"], params)  # no train split to train on
    index = pd.read_csv(kedro_project / "data/05_model_input/targets_index.csv")
    assert len(index) == 4 * 3
    target = np.asarray(Image.open(kedro_project / "data/05_model_input/targets" /
                                   index.loc[index["kind"] == "semantic", "target_file"].iloc[0]))
    assert target.shape == (32, 32, 3)


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_writes_report_and_nothing_downstream(kedro_project, tmp_path, name):
    paths = break_fixture(tmp_path / "coco", name)
    with pytest.raises(InvalidDatasetError) as caught:
        run_kedro(kedro_project, "sgt", _coco_source(paths))
    _, record, field = BAD_INPUTS[name]
    assert record in str(caught.value)
    data = kedro_project / "data"
    assert not list((data / "02_intermediate").glob("*.parquet"))
    assert not list((data / "05_model_input").iterdir())
    report = (data / "08_reporting/ingestion_report.md").read_text()
    assert "FAILED" in report and record in report and field in report
    assert json.loads((data / "08_reporting/ingestion_summary.json").read_text())["success"] is False


def test_bad_parameter_fails_before_any_work_naming_the_key(kedro_project):
    with pytest.raises(Exception, match="image_szie"):
        run_kedro(kedro_project, "sgt", {"rendering": {"image_szie": 32}})
    assert not list((kedro_project / "data/01_raw").iterdir())


def _cli_env() -> dict:
    env = dict(os.environ)
    env.update(KEDRO_DISABLE_TELEMETRY="1", DO_NOT_TRACK="1", GX_ANALYTICS_ENABLED="false")
    env["COLUMNS"] = "300"  # one log record per line
    env.pop("PYTHONWARNINGS", None)  # Kedro shows its own deprecation warnings by default
    return env


@pytest.mark.slow
def test_kedro_run_pipeline_as_typed_without_deprecation_warning(kedro_project):
    kedro = Path(sys.executable).with_name("kedro")
    params = ("world.splits.train=4,world.splits.val=2,pretrain.vq.steps=2,pretrain.vq.batch_size=4,"
              "pretrain.encoder.steps=2,pretrain.encoder.batch_size=4,"
              "pretrain.base.global_batch=4,pretrain.base.trainer.max_steps=2,"
              "train.run.global_batch=4,train.run.trainer.max_steps=2")
    done = subprocess.run([str(kedro), "run", "--pipeline", "sgt", "--params", params],
                          cwd=kedro_project, env=_cli_env(), capture_output=True, text=True,
                          timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "deprecated" not in output.lower() and "Warning" not in output, output[-3000:]
    assert "Pipeline execution completed successfully" in output
    assert len(list((kedro_project / "data/05_model_input/targets").rglob("*.png"))) == 6 * len(KINDS)


def test_sgt_trains_a_hugging_face_checkpoint_from_a_local_directory(kedro_project, tmp_path):
    """The real-model path: `model.pretrained_path` names an HF-format Janus directory this run did not
    create; pretraining is skipped and SGT post-trains it."""
    from sgt_pipeline.models import TinyJanusConfig, build_processor, build_tiny_janus
    from sgt_pipeline.models.adapter import JanusAdapter
    from sgt_pipeline.models.tokenizer import build_word_tokenizer
    from sgt_pipeline.training.instructions import instruction_words
    from sgt_pipeline.world import WorldConfig, vocabulary

    config = TinyJanusConfig(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128,
                             vision_hidden_size=64, vision_layers=1, vq_codebook_size=64)
    tokenizer = build_word_tokenizer(sorted(set(vocabulary(WorldConfig())) | set(instruction_words())))
    checkpoint = tmp_path / "Janus-tiny-hf"
    JanusAdapter(build_tiny_janus(config, tokenizer),
                 build_processor(tokenizer, config.image_size, config.num_image_tokens)
                 ).save_pretrained(checkpoint)

    run_kedro(kedro_project, "sgt", {**TINY_WORLD, **TINY_TRAINING,
                                     "model": {"pretrained_path": str(checkpoint)}})
    data = kedro_project / "data"
    assert json.loads((data / "06_models/base_model.json").read_text())["path"] == str(checkpoint)
    assert not (data / "06_models/base").exists()  # nothing pretrained
    trained = JanusAdapter.from_pretrained(data / "06_models/sgt")
    original = JanusAdapter.from_pretrained(checkpoint)
    moved = [name for name, p in trained.model.named_parameters()
             if not np.allclose(p.detach().numpy(), original.model.get_parameter(name).detach().numpy())]
    assert moved and not any("vqmodel" in name for name in moved)  # trained, VQ frozen


@pytest.mark.slow
def test_train_pipeline_under_torchrun_with_two_processes(kedro_project):
    """`torchrun --nproc_per_node=2 kedro run --pipeline train`: gloo on CPU, rank 0 writes."""
    run_kedro(kedro_project, ["world", "ingestion", "rendering", "pretrain"],
              {**TINY_WORLD, **TINY_TRAINING})
    kedro = Path(sys.executable).with_name("kedro")
    params = "train.run.global_batch=12,train.run.trainer.max_steps=2"  # 2 + 2 + 8 examples: every task on both ranks
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
         str(kedro), "run", "--pipeline", "train", "--params", params],
        cwd=kedro_project, env=_cli_env(), capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    metrics = json.loads((kedro_project / "data/08_reporting/train_metrics.json").read_text())
    assert metrics["train/steps"] == 2
    assert (kedro_project / "data/06_models/sgt/model.safetensors").is_file()
    assert output.count("trained to step 2") == 1  # one summary: rank 0's
    assert not list((kedro_project / "data/06_models").glob(".*tmp*"))  # no rank left a partial write


def test_base_model_is_built_once_and_rebuilt_when_its_config_changes(kedro_project):
    params = {**TINY_WORLD, **TINY_TRAINING}
    run_kedro(kedro_project, ["world", "ingestion", "rendering", "pretrain"], params)
    reference = kedro_project / "data/06_models/base_model.json"
    weights = kedro_project / "data/06_models/base/model.safetensors"
    first, built_at = json.loads(reference.read_text()), weights.stat().st_mtime_ns

    run_kedro(kedro_project, "pretrain", params)  # nothing changed: cached
    assert json.loads(reference.read_text())["fingerprint"] == first["fingerprint"]
    assert weights.stat().st_mtime_ns == built_at

    changed = {**params, "pretrain": {**params["pretrain"], "vq": {"steps": 3, "batch_size": 4}}}
    run_kedro(kedro_project, "pretrain", changed)  # a new build, in its own checkpoint directory
    second = json.loads(reference.read_text())
    assert second["fingerprint"] != first["fingerprint"] and second["metrics"]["vq/steps"] == 3
    assert weights.stat().st_mtime_ns != built_at
    runs = {p.name for p in (kedro_project / "data/06_models/base_runs").iterdir()}
    assert runs == {first["fingerprint"][:16], second["fingerprint"][:16]}
