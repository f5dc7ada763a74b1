from kedro.pipeline import Pipeline

from sgt_pipeline.pipelines import ingestion, rendering, world


def create_pipeline(**kwargs) -> Pipeline:
    # Training and evaluation join here as they land.
    return world.create_pipeline() + ingestion.create_pipeline() + rendering.create_pipeline()
