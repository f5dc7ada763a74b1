from kedro.pipeline import Node, Pipeline

from sgt_pipeline.pipelines.evaluation.nodes import evaluate_sgt_model, write_report


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(evaluate_sgt_model,
             inputs=["sgt_model", "raw_dataset", "images", "qa", "captions", "proxy_targets_index",
                     "proxy_targets", "palettes", "params:train", "params:evaluation"],
             outputs=["eval_metrics", "eval_answers", "eval_probe", "eval_attention", "eval_geneval",
                      "eval_layers_plot", "eval_samples"],
             name="evaluate_sgt_model"),
        Node(write_report, inputs=["eval_metrics", "eval_probe", "eval_attention", "sgt_model", "params:train"],
             outputs="eval_report", name="write_evaluation_report"),
    ])
