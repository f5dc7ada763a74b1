"""Optuna storage from configuration: SQLite (default, one machine), PostgreSQL (several machines) or a
JournalStorage file.

RDB storages (SQLite, PostgreSQL) get a heartbeat and ``RetryHeartbeatStaleTrialCallback``: a worker that dies
mid-trial stops beating, the next worker to start a trial marks it failed, and the callback re-queues its
parameters (up to ``max_retry`` times), so the study still completes. ``JournalStorage`` has no heartbeat in
Optuna 5: a killed worker's trial stays RUNNING there.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import optuna
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend

from sgt_pipeline.sweep.config import Storage


def storage_url(config: Storage) -> str:
    """The configured URL, or the ``url_env`` environment variable's value when that is set."""
    return (os.environ.get(config.url_env) if config.url_env else None) or config.url


def open_storage(config: Storage) -> optuna.storages.BaseStorage:
    url = storage_url(config)
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs = {}
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # Several local workers write the same file: wait for its lock instead of failing at once.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    with warnings.catch_warnings():  # the heartbeat is "experimental" since Optuna 2.x
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(
            url, engine_kwargs=engine_kwargs,
            heartbeat_interval=config.heartbeat_interval, grace_period=config.grace_period,
            heartbeat_stale_trial_callback=(RetryHeartbeatStaleTrialCallback(max_retry=config.max_retry)
                                            if config.heartbeat_interval else None))
