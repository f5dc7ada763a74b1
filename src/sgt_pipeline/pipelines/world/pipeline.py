from kedro.pipeline import Node, Pipeline

from sgt_pipeline.pipelines.world.nodes import prepare_raw_dataset


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(prepare_raw_dataset, inputs=["params:world", "params:source"], outputs="raw_dataset",
             name="prepare_raw_dataset"),
    ])
