"""Project CLI: Kedro's own commands, with ``kedro run --pipeline NAME`` kept first-class.

Kedro >= 1.4 deprecates ``--pipeline`` in favour of ``--pipelines`` and prints a warning. Our users
(and dvc.yaml) type ``kedro run --pipeline sgt``, so this ``run`` command takes the very same options as
Kedro's and hands ``--pipeline NAME`` over as ``--pipelines NAME`` — Kedro's code path, no warning.
"""

import click
from kedro.framework.cli.project import run as kedro_run


@click.group(name="sgt-pipeline")
def cli():
    """Command line tools for sgt-pipeline."""


@cli.command(name="run", params=kedro_run.params, help=kedro_run.help)
@click.pass_context
def run(ctx: click.Context, pipeline: str | None, pipelines: list[str], **kwargs):
    if pipeline and pipelines:
        raise click.UsageError("Options '--pipeline' and '--pipelines' cannot be used together")
    if pipeline:
        pipelines = [pipeline]
    return ctx.invoke(kedro_run.callback, pipeline=None, pipelines=pipelines, **kwargs)
