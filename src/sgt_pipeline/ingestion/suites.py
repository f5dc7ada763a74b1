"""Great Expectations suites over the tidy tables, and the validation report they produce.

Each expectation carries the source field it protects and a message template; a failing row becomes a
problem ``{file, record, field, message}`` through GX's ``unexpected_index_list`` (the table's id column
and ``source_file`` are requested as index columns), so the error names file, record and field.
Great Expectations is imported lazily: it costs seconds to import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from sgt_pipeline.ingestion.tables import UNSAFE_FILE_NAME

NON_BLANK = r"\S"
MAX_EXAMPLES = 5


@dataclass(frozen=True)
class Check:
    """One expectation: GX type name, its kwargs, the source field it guards, a message template."""

    expectation: str
    kwargs: dict[str, Any]
    field: str
    message: str


@dataclass
class TableSuite:
    """A table to validate, how its records are named, and its checks."""

    name: str
    frame: pd.DataFrame
    record_kind: str
    id_columns: list[str]
    checks: list[Check] = field(default_factory=list)


def _in_set(column: str, values, field_: str, message: str) -> Check:
    plain = [v.item() if hasattr(v, "item") else v for v in values]  # GX stores suites as JSON
    return Check("ExpectColumnValuesToBeInSet", {"column": column, "value_set": plain},
                 field_, message)


def _unique(column: str, field_: str = "id") -> Check:
    return Check("ExpectColumnValuesToBeUnique", {"column": column}, field_,
                 f"duplicate {field_} {{{column}}}")


def _non_blank(column: str) -> Check:
    return Check("ExpectColumnValuesToMatchRegex", {"column": column, "regex": NON_BLANK}, column,
                 "is empty")


def _same(a: str, b: str, field_: str, message: str) -> Check:
    return Check("ExpectColumnPairValuesToBeEqual",
                 {"column_A": a, "column_B": b, "ignore_row_if": "either_value_is_missing"},
                 field_, message)


def _between(column: str, field_: str, message: str, **bounds) -> Check:
    return Check("ExpectColumnValuesToBeBetween", {"column": column, **bounds}, field_, message)


def build_suites(tables: dict[str, pd.DataFrame], bbox_tolerance: float = 1.0) -> list[TableSuite]:
    """The suites for the ingestion tables (see the module docstring for how failures are named)."""
    images, anns, cats = tables["images"], tables["annotations"], tables["categories"]
    image_ids, category_ids = images["image_id"].unique(), cats["category_id"].unique()

    image_checks = [
        _unique("image_id"),
        Check("ExpectColumnValuesToNotMatchRegex", {"column": "file_name", "regex": UNSAFE_FILE_NAME},
              "file_name", "unsafe path {file_name!r} (absolute or containing '..')"),
        _in_set("file_exists", [True], "file_name", "image file not found: {path}"),
        _in_set("decodes", [True], "file_name", "image file does not decode: {path}"),
        _same("width", "decoded_width", "width", "JSON says {width}, the file is {decoded_width} wide"),
        _same("height", "decoded_height", "height",
              "JSON says {height}, the file is {decoded_height} high"),
    ]
    if "depth_path" in images:
        image_checks += [
            _in_set("depth_exists", [True], "depth", "depth map not found: {depth_path}"),
            _same("width", "depth_width", "depth", "depth map is {depth_width} wide, image {width}"),
            _same("height", "depth_height", "depth", "depth map is {depth_height} high, image {height}"),
        ]
    if "panoptic_path" in images:
        image_checks += [
            Check("ExpectColumnValuesToNotMatchRegex",
                  {"column": "panoptic_file_name", "regex": UNSAFE_FILE_NAME}, "panoptic file_name",
                  "unsafe path {panoptic_file_name!r}"),
            _in_set("panoptic_exists", [True], "panoptic file_name",
                    "panoptic PNG not found: {panoptic_path}"),
            _same("width", "panoptic_width", "panoptic file_name",
                  "panoptic PNG is {panoptic_width} wide, image {width}"),
            _same("height", "panoptic_height", "panoptic file_name",
                  "panoptic PNG is {panoptic_height} high, image {height}"),
        ]

    # Annotations are checked against their image's size: join it in (missing image → nulls, which the
    # reference check reports once, instead of every size check again).
    sizes = images[["image_id", "width", "height"]].drop_duplicates("image_id")
    view = anns.merge(sizes.rename(columns={"width": "image_width", "height": "image_height"}),
                      on="image_id", how="left")
    view["bbox_right"] = view["bbox_x"] + view["bbox_w"]
    view["bbox_bottom"] = view["bbox_y"] + view["bbox_h"]
    view["width_limit"] = view["image_width"] + bbox_tolerance
    view["height_limit"] = view["image_height"] + bbox_tolerance
    annotation_checks = [
        _unique("ann_id"),
        _in_set("image_id", image_ids, "image_id", "refers to image {image_id}, which does not exist"),
        _in_set("category_id", category_ids, "category_id",
                "refers to category {category_id}, which does not exist"),
        _between("bbox_w", "bbox", "width {bbox_w} is not positive", min_value=0, strict_min=True),
        _between("bbox_h", "bbox", "height {bbox_h} is not positive", min_value=0, strict_min=True),
        _between("bbox_x", "bbox", "x {bbox_x} lies left of the image", min_value=-bbox_tolerance),
        _between("bbox_y", "bbox", "y {bbox_y} lies above the image", min_value=-bbox_tolerance),
        Check("ExpectColumnPairValuesAToBeGreaterThanB",
              {"column_A": "width_limit", "column_B": "bbox_right", "or_equal": True,
               "ignore_row_if": "either_value_is_missing"},
              "bbox", "right edge {bbox_right} extends past the image width {image_width}"),
        Check("ExpectColumnPairValuesAToBeGreaterThanB",
              {"column_A": "height_limit", "column_B": "bbox_bottom", "or_equal": True,
               "ignore_row_if": "either_value_is_missing"},
              "bbox", "bottom edge {bbox_bottom} extends past the image height {image_height}"),
        _between("area", "area", "area {area} is not positive", min_value=0, strict_min=True),
        _between("min_polygon_points", "segmentation",
                 "a polygon has {min_polygon_points} point(s); at least 3 are needed", min_value=3),
        _same("rle_height", "image_height", "segmentation",
              "RLE height {rle_height} differs from the image height {image_height}"),
        _same("rle_width", "image_width", "segmentation",
              "RLE width {rle_width} differs from the image width {image_width}"),
    ]
    suites = [
        TableSuite("images", images, "image", ["image_id"], image_checks),
        TableSuite("annotations", view, "annotation", ["ann_id"], annotation_checks),
        TableSuite("categories", cats, "category", ["category_id"],
                   [_unique("category_id"), _non_blank("name")]),
    ]
    if len(tables["captions"]):
        suites.append(TableSuite("captions", tables["captions"], "caption", ["caption_id"], [
            _unique("caption_id"),
            _in_set("image_id", image_ids, "image_id", "refers to image {image_id}, which does not exist"),
            _non_blank("caption"),
        ]))
    if len(tables["qa"]):
        suites.append(TableSuite("qa", tables["qa"], "question", ["question_id"], [
            _unique("question_id", "question_id"),
            _in_set("image_id", image_ids, "image_id", "refers to image {image_id}, which does not exist"),
            _non_blank("question"),
            _non_blank("answer"),
            _non_blank("type"),
        ]))
    if len(tables["segments"]):
        suites.append(TableSuite("segments", tables["segments"], "segment", ["image_id", "segment_id"], [
            Check("ExpectCompoundColumnsToBeUnique", {"column_list": ["image_id", "segment_id"]},
                  "id", "duplicate segment id {segment_id} in image {image_id}"),
            _in_set("image_id", image_ids, "image_id", "refers to image {image_id}, which does not exist"),
            _in_set("category_id", category_ids, "category_id",
                    "refers to category {category_id}, which does not exist"),
            _between("area", "area", "area {area} is not positive", min_value=0, strict_min=True),
        ]))
    return suites


def run_suites(suites: list[TableSuite]) -> dict[str, Any]:
    """Validate every table with Great Expectations; returns the report (problems listed, not raised)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_pandas("ingestion")
    report: dict[str, Any] = {"success": True, "tables": {}, "checks": [], "problems": []}
    for table in suites:
        suite = context.suites.add(gx.ExpectationSuite(name=table.name))
        for number, check in enumerate(table.checks):
            expectation = getattr(gx.expectations, check.expectation)
            suite.add_expectation(expectation(**check.kwargs, meta={"check": number}))
        batch = source.add_dataframe_asset(table.name).add_batch_definition_whole_dataframe("all")
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(name=table.name, data=batch, suite=suite))
        # Ask GX to return, for each failing row, its id and every column the messages quote.
        quoted = [c for check in table.checks for c in _template_columns(check.message)]
        index_columns = list(dict.fromkeys(
            c for c in [*table.id_columns, "source_file", *quoted] if c in table.frame))
        result = validation.run(
            batch_parameters={"dataframe": table.frame},
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": index_columns},
        )
        report["tables"][table.name] = len(table.frame)
        # GX does not keep suite order in its results: match them back through ``meta``.
        for outcome in result.results:
            check = table.checks[outcome.expectation_config.meta["check"]]
            problems = [_problem(table, check, row) for row in
                        outcome.result.get("unexpected_index_list") or []]
            report["success"] &= bool(outcome.success)
            report["checks"].append({
                "table": table.name, "expectation": outcome.expectation_config.type,
                "field": check.field, "success": bool(outcome.success),
                "unexpected": int(outcome.result.get("unexpected_count") or 0),
                "examples": [p["message"] for p in problems[:MAX_EXAMPLES]],
            })
            report["problems"] += problems
    return report


def _problem(table: TableSuite, check: Check, row: dict[str, Any]) -> dict[str, Any]:
    values = {k: _plain(v) for k, v in row.items()}
    for column in _template_columns(check.message):
        values.setdefault(column, "?")
    if len(table.id_columns) == 1:
        ident = f"id={values[table.id_columns[0]]}"
    else:
        ident = " ".join(f"{c}={values[c]}" for c in table.id_columns)
    return {"file": str(values.get("source_file", "?")), "record": f"{table.record_kind} {ident}",
            "field": check.field, "message": check.message.format(**values)}


def _template_columns(template: str) -> list[str]:
    import string

    return [name.split("!")[0] for _, name, _, _ in string.Formatter().parse(template) if name]


def _plain(value: Any) -> Any:
    """numpy scalars → Python, and whole floats shown as ints (COCO sizes are often 640.0)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def report_markdown(report: dict[str, Any]) -> str:
    """A validation report a person can read."""
    status = "PASSED" if report["success"] else "FAILED"
    lines = [f"# Ingestion validation: {status}", ""]
    if report["tables"]:
        lines += ["| table | rows |", "|---|---:|"]
        lines += [f"| {name} | {rows} |" for name, rows in report["tables"].items()]
        lines.append("")
    if report["checks"]:
        lines += ["| table | field | expectation | result | failing rows | examples |",
                  "|---|---|---|---|---:|---|"]
        for c in report["checks"]:
            examples = "; ".join(c["examples"]).replace("|", "\\|")
            lines.append(f"| {c['table']} | {c['field']} | {c['expectation']} | "
                         f"{'ok' if c['success'] else '**FAIL**'} | {c['unexpected']} | {examples} |")
        lines.append("")
    if report["problems"]:
        lines += [f"## Problems ({len(report['problems'])})", ""]
        lines += [f"- `{p['file']}`: {p['record']}: field `{p['field']}`: {p['message']}"
                  for p in report["problems"][:200]]
        if len(report["problems"]) > 200:
            lines.append(f"- ... and {len(report['problems']) - 200} more")
    return "\n".join(lines) + "\n"
