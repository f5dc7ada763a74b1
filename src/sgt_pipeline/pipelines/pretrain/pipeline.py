from kedro.pipeline import Node, Pipeline

from sgt_pipeline.pipelines.pretrain.nodes import pretrain_base_model


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(pretrain_base_model,
             inputs=["images", "qa", "captions", "proxy_targets_index", "proxy_targets", "palettes", "categories",
                     "params:model", "params:pretrain"],
             outputs="base_model", name="pretrain_base_model"),
    ])
