"""Project pipelines: every package under ``pipelines/`` (``sgt`` composes the others)."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    # Kedro 1.7 imports only the pipelines a run asks for, so `sgt` is a package of its own rather
    # than a sum assembled here.
    pipelines = find_pipelines(raise_errors=True)
    if "sgt" in pipelines:
        pipelines["__default__"] = pipelines["sgt"]
    return pipelines
