"""``sweep`` pipeline: Optuna over the proxy-loss weights, then its tables, plots and best parameters."""

from sgt_pipeline.pipelines.sweep.pipeline import create_pipeline

__all__ = ["create_pipeline"]
