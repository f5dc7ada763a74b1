"""Kedro project settings."""

from kedro.config import OmegaConfigLoader

from sgt_pipeline.hooks import NodeTimingHooks, ValidationReportHooks

HOOKS = (ValidationReportHooks(), NodeTimingHooks())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Environments such as conf/coco override single keys of a parameters block instead of
    # replacing the whole top-level block.
    "merge_strategy": {"parameters": "soft"},
}
