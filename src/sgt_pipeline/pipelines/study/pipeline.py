from kedro.pipeline import Node, Pipeline

from sgt_pipeline.pipelines import ingestion, pretrain, rendering, world
from sgt_pipeline.pipelines.study.nodes import report_proxy_study, run_proxy_study


def create_pipeline(**kwargs) -> Pipeline:
    study = Pipeline([
        Node(run_proxy_study,
             inputs=["raw_dataset", "images", "qa", "captions", "proxy_targets_index", "proxy_targets", "palettes",
                     "base_model", "params:train", "params:evaluation", "params:study"],
             outputs="study_results", name="run_proxy_study"),
        Node(report_proxy_study, inputs=["study_results", "params:study"],
             outputs=["study_summary", "study_claims", "study_metrics", "study_plot", "study_report"],
             name="report_proxy_study"),
    ])
    return world.create_pipeline() + ingestion.create_pipeline() + rendering.create_pipeline() \
        + pretrain.create_pipeline() + study
