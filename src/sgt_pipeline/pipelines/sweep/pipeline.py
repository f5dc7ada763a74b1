from kedro.pipeline import Node, Pipeline

from sgt_pipeline.pipelines.sweep.nodes import report_sweep, run_sweep


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(run_sweep,
             inputs=["raw_dataset", "images", "qa", "captions", "proxy_targets_index", "proxy_targets",
                     "base_model", "params:train", "params:sweep"],
             outputs="sweep_summary", name="run_sweep"),
        Node(report_sweep, inputs=["sweep_summary", "params:train", "params:sweep"],
             outputs=["sweep_trials", "sweep_history_plot", "sweep_pareto_plot", "sweep_importance_plot",
                      "sweep_best_parameters", "sweep_report"],
             name="report_sweep"),
    ])
