"""sgt-pipeline: Semantic Generative Tuning of unified multimodal models as a Kedro/DVC pipeline.

Library modules (``world``, ``ingestion``, ``rendering``, ...) are importable without Kedro;
``pipelines`` wires them into Kedro nodes.
"""

__version__ = "0.1.0"
