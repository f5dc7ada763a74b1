from kedro.pipeline import Node, Pipeline

from sgt_pipeline.pipelines.train.nodes import post_train_model


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(post_train_model,
             inputs=["images", "qa", "captions", "proxy_targets_index", "proxy_targets", "base_model",
                     "params:train"],
             outputs=["sgt_model", "train_metrics"], name="post_train_model"),
    ])
