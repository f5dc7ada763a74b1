from kedro.pipeline import Pipeline

from sgt_pipeline.pipelines import evaluation, ingestion, pretrain, rendering, train, world


def create_pipeline(**kwargs) -> Pipeline:
    return (world.create_pipeline() + ingestion.create_pipeline() + rendering.create_pipeline()
            + pretrain.create_pipeline() + train.create_pipeline() + evaluation.create_pipeline())
