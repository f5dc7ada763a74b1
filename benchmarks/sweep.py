"""Sweep benchmark, in one run on the embedded default's data and base model:

1. Pruning: the same N trials (parameters drawn once by a seeded random sampler, enqueued in both studies;
   training and scoring are deterministic) run without and with the configured pruner. Prints the trial-steps
   each spent in total and until it reached the unpruned study's best value (goal: pruned <= 0.5x).
2. Workers: trials per hour of one study run by 1 worker and by 2 worker processes (goal: 2 workers >= 1.7x),
   each worker with `--threads` torch threads, measured from the storage's trial timestamps (first start to
   last completion). With 1 thread per worker the 2 workers use the machine's 2 cores; the line with 1
   worker on 2 threads says what the second core gives a single worker instead.

    python benchmarks/sweep.py [--trials 10] [--worker-trials 4]

Needs `data/` from the sgt pipeline's first stages; runs `kedro run --pipelines world,ingestion,rendering,pretrain`
first when the base model is missing.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
for _name, _value in {"KEDRO_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1", "DVC_NO_ANALYTICS": "1",
                      "GX_ANALYTICS_ENABLED": "false"}.items():
    os.environ.setdefault(_name, _value)

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import torch

ROOT = Path(__file__).resolve().parents[1]


def _plain(parameters) -> dict:
    """Kedro hands typed parameters back as their pydantic models: work on plain dicts."""
    return parameters.model_dump() if hasattr(parameters, "model_dump") else dict(parameters)


def load_inputs(overrides: dict):
    """(sweep config, base path, train run config, train examples, val examples, val COCO) from the catalog."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project
    from pycocotools.coco import COCO

    from sgt_pipeline.sweep import SweepConfig
    from sgt_pipeline.training.examples import load_split_examples
    from sgt_pipeline.training.post_train import PostTrainConfig

    bootstrap_project(ROOT)
    os.chdir(ROOT)
    with KedroSession.create(project_path=ROOT) as session:
        context = session.load_context()
        catalog, params = context.catalog, context.params
        tables = [catalog.load(name) for name in ("images", "qa", "captions", "proxy_targets_index", "proxy_targets")]
        base, raw = catalog.load("base_model"), catalog.load("raw_dataset")
    sweep = _plain(params["sweep"])
    for key, value in overrides.items():  # one level deep: trial, pruner, storage, ...
        sweep[key] = {**sweep[key], **value} if isinstance(value, dict) else value
    train = PostTrainConfig.model_validate(_plain(params["train"]))
    return (SweepConfig.model_validate(sweep), base["path"], train.run, load_split_examples("train", *tables),
            load_split_examples("val", *tables, proxy_kinds=[]), COCO(raw["splits"]["val"]["instances_json"]))


def sampled_parameters(config, count: int, seed: int) -> list[dict]:
    from sgt_pipeline.sweep.trial import suggest

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [suggest(study.ask(), config.space) for _ in range(count)]


def steps_to_reach(study: optuna.Study, target: float) -> tuple[int, int, bool]:
    """(trial-steps until the first trial with value >= target, total trial-steps, reached)."""
    spent, until = 0, None
    for trial in sorted(study.trials, key=lambda t: t.number):
        spent += int(trial.user_attrs.get("steps", 0))
        if until is None and trial.value is not None and trial.value >= target - 1e-12:
            until = spent
    return (until if until is not None else spent), spent, until is not None


def pruning_phase(args, storage: str) -> None:
    from sgt_pipeline.sweep import build_runner, open_study, run_worker

    torch.set_num_threads(2)
    results = {}
    for label, pruner in (("no pruning", {"kind": "none"}), ("pruned", {})):
        overrides = {"study_name": f"bench-prune-{label.replace(' ', '-')}", "n_trials": args.trials,
                     "pruner": pruner, "storage": {"url": storage, "url_env": None}}
        config, base, run, train, val, coco = load_inputs(overrides)
        study = open_study(config)
        for params in sampled_parameters(config, args.trials, args.seed):
            study.enqueue_trial(params)
        started = time.perf_counter()
        run_worker(study, build_runner(config, base, run, train, val, coco), config)
        results[label] = (study, time.perf_counter() - started)
        print(f"  {label}: {args.trials} trials in {results[label][1]:.0f} s", flush=True)

    best = results["no pruning"][0].best_value
    base_until, base_total, _ = steps_to_reach(results["no pruning"][0], best)
    until, total, reached = steps_to_reach(results["pruned"][0], best)
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in results["pruned"][0].trials)
    print(f"Pruning ({args.trials} identical trials, {config.pruner.kind} pruner, {config.trial.steps} steps each; "
          f"{pruned} pruned):")
    print(f"  best value (unpruned)      {best:.4f}; pruned study's best {results['pruned'][0].best_value:.4f}")
    print(f"  trial-steps, total         unpruned {base_total}, pruned {total}: ratio {total / base_total:.2f}")
    print(f"  trial-steps to reach best  unpruned {base_until}, pruned {until}"
          f"{'' if reached else ' (never reached)'}: ratio {until / base_until:.2f}  (goal <= 0.5)")
    print(f"  wall time                  unpruned {results['no pruning'][1]:.0f} s, pruned {results['pruned'][1]:.0f} s")


def throughput(storage: str, study_name: str) -> tuple[int, float]:
    study = optuna.load_study(study_name=study_name, storage=storage)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    return len(done), len(done) / span * 3600


def workers_phase(args, storage: str) -> None:
    rates = {}
    for workers, threads in ((1, 1), (2, 1), (1, 2)):
        name = f"bench-workers-{workers}x{threads}"
        command = [sys.executable, __file__, "--worker", name, "--storage", storage, "--threads", str(threads),
                   "--worker-trials", str(args.worker_trials)]
        processes = [subprocess.Popen(command, env={**os.environ, "SGT_SWEEP_WORKER": str(i)},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                     for i in range(workers)]
        for process in processes:
            _, err = process.communicate()
            if process.returncode:
                raise RuntimeError(f"worker failed:\n{err[-3000:]}")
        rates[(workers, threads)] = throughput(storage, name)
        print(f"  {workers} worker(s) x {threads} thread(s): {rates[(workers, threads)][0]} trials, "
              f"{rates[(workers, threads)][1]:.1f} trials/hour", flush=True)
    one, two, one_two = rates[(1, 1)][1], rates[(2, 1)][1], rates[(1, 2)][1]
    print("Workers (one study, trials/hour):")
    print(f"  2 workers x 1 thread vs 1 worker x 1 thread   ratio {two / one:.2f}  (goal >= 1.7)")
    print(f"  2 workers x 1 thread vs 1 worker x 2 threads  ratio {two / one_two:.2f}  (what the 2nd core buys)")


def worker_main(args) -> None:
    from sgt_pipeline.sweep import build_runner, open_study, run_worker

    torch.set_num_threads(args.threads)
    overrides = {"study_name": args.worker, "n_trials": args.worker_trials, "pruner": {"kind": "none"},
                 "storage": {"url": args.storage, "url_env": None}}
    config, base, run, train, val, coco = load_inputs(overrides)
    run_worker(open_study(config), build_runner(config, base, run, train, val, coco), config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=10, help="trials per study in the pruning comparison")
    parser.add_argument("--worker-trials", type=int, default=4, help="trials per study in the worker comparison")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--phase", choices=["all", "pruning", "workers"], default="all",
                        help="pruning counts trial-steps (load-independent); workers measures time: run it alone")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one worker of this study
    parser.add_argument("--storage", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args)
        return
    if not (ROOT / "data/06_models/base_model.json").is_file():
        subprocess.run([str(Path(sys.executable).with_name("kedro")), "run", "--pipelines",
                        "world,ingestion,rendering,pretrain"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory() as scratch:
        storage = f"sqlite:///{scratch}/bench.db"
        if args.phase in ("all", "pruning"):
            pruning_phase(args, storage)
        if args.phase in ("all", "workers"):
            workers_phase(args, storage)


if __name__ == "__main__":
    main()
