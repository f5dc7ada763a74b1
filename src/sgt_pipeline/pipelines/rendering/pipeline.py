from kedro.pipeline import Node, Pipeline

from sgt_pipeline.pipelines.rendering.nodes import render_proxy_targets


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(render_proxy_targets,
             inputs=["images", "annotations", "categories", "segments", "params:rendering"],
             outputs=["proxy_targets", "proxy_targets_index", "palettes"],
             name="render_proxy_targets"),
    ])
