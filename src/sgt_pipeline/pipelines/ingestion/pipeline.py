from kedro.pipeline import Node, Pipeline

from sgt_pipeline.pipelines.ingestion.nodes import ingest_raw_dataset


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(ingest_raw_dataset, inputs=["raw_dataset", "params:ingestion"],
             outputs=["images", "annotations", "categories", "captions", "qa", "segments",
                      "ingestion_report", "ingestion_summary"],
             name="ingest_raw_dataset"),
    ])
