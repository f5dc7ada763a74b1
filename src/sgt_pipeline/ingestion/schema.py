"""Structural checks of raw COCO-format files: parseable, required keys present, values of the right type.

These run before anything is indexed, so that pycocotools and the Great Expectations suites only ever
see well-formed records. Every problem names its file, record and field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sgt_pipeline.ingestion.errors import InvalidDatasetError

Problem = dict[str, Any]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_bbox(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 4 and all(_is_number(v) for v in value)


def _is_color(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 3
        and all(_is_int(v) and 0 <= v <= 255 for v in value)
    )


def _is_segmentation(value: Any) -> bool:
    """Polygons (list of flat coordinate lists) or RLE ({size: [h, w], counts: str | list[int]})."""
    if isinstance(value, list):
        return all(
            isinstance(part, list) and len(part) % 2 == 0 and all(_is_number(v) for v in part)
            for part in value
        )
    if isinstance(value, dict):
        size, counts = value.get("size"), value.get("counts")
        return (
            isinstance(size, list)
            and len(size) == 2
            and all(_is_int(v) for v in size)
            and (_is_str(counts) or (isinstance(counts, list) and all(_is_int(v) for v in counts)))
        )
    return False


# field -> (check, what was expected); "?" marks an optional field.
Spec = dict[str, tuple[Callable[[Any], bool], str]]

IMAGE_SPEC: Spec = {
    "id": (_is_int, "an integer"),
    "file_name": (_is_str, "a string"),
    "width": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "height": (lambda v: _is_int(v) and v > 0, "a positive integer"),
}
ANNOTATION_SPEC: Spec = {
    "id": (_is_int, "an integer"),
    "image_id": (_is_int, "an integer"),
    "category_id": (_is_int, "an integer"),
    "bbox": (_is_bbox, "a list of 4 numbers [x, y, w, h]"),
    "area": (_is_number, "a number"),
    "segmentation": (_is_segmentation, "polygons [[x1, y1, ...], ...] or RLE {size, counts}"),
    "iscrowd?": (lambda v: v in (0, 1) and not isinstance(v, bool), "0 or 1"),
}
CATEGORY_SPEC: Spec = {
    "id": (_is_int, "an integer"),
    "name": (_is_str, "a string"),
    "supercategory?": (_is_str, "a string"),
    "color?": (_is_color, "[r, g, b] with integers 0..255"),
    "isthing?": (lambda v: v in (0, 1) and not isinstance(v, bool), "0 or 1"),
}
CAPTION_SPEC: Spec = {
    "id": (_is_int, "an integer"),
    "image_id": (_is_int, "an integer"),
    "caption": (_is_str, "a string"),
}
QA_SPEC: Spec = {
    "question_id": (_is_int, "an integer"),
    "image_id": (_is_int, "an integer"),
    "question": (_is_str, "a string"),
    "answer": (_is_str, "a string"),
    "type": (_is_str, "a string"),
}
PANOPTIC_SPEC: Spec = {
    "image_id": (_is_int, "an integer"),
    "file_name": (_is_str, "a string"),
    "segments_info": (lambda v: isinstance(v, list), "a list"),
}
SEGMENT_SPEC: Spec = {
    "id": (_is_int, "an integer"),
    "category_id": (_is_int, "an integer"),
    "area": (_is_number, "a number"),
    "bbox": (_is_bbox, "a list of 4 numbers [x, y, w, h]"),
    "iscrowd?": (lambda v: v in (0, 1) and not isinstance(v, bool), "0 or 1"),
}


def _describe(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return f"{type(value).__name__} {text[:60]}"


def check_records(
    file: str | Path, kind: str, records: Iterable[Any], spec: Spec, id_key: str = "id"
) -> list[Problem]:
    """Check every record of one list against ``spec``; returns the problems found."""
    problems: list[Problem] = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            problems.append(_problem(file, f"{kind} #{index}", "<record>",
                                     f"expected an object, got {_describe(record)}"))
            continue
        name = _record_name(kind, record, index, id_key)
        for key, (is_valid, expected) in spec.items():
            optional = key.endswith("?")
            field = key.rstrip("?")
            if field not in record:
                if not optional:
                    problems.append(_problem(file, name, field, "missing required key"))
                continue
            if not is_valid(record[field]):
                problems.append(_problem(
                    file, name, field, f"expected {expected}, got {_describe(record[field])}"))
    return problems


def _record_name(kind: str, record: dict, index: int, id_key: str) -> str:
    ident = record.get(id_key)
    return f"{kind} {id_key}={ident}" if _is_int(ident) else f"{kind} #{index}"


def _problem(file: str | Path, record: str, field: str, message: str) -> Problem:
    return {"file": str(file), "record": record, "field": field, "message": message}


def load_json(path: str | Path) -> Any:
    """Parse a JSON file; a missing, empty or truncated file raises InvalidDatasetError with its position."""
    path = Path(path)
    if not path.is_file():
        raise InvalidDatasetError(path, "<file>", "<file>", "file not found")
    try:
        with path.open("rb") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise InvalidDatasetError(
            path, f"line {err.lineno} column {err.colno}", "<json>", f"invalid JSON: {err.msg}"
        ) from err
    except UnicodeDecodeError as err:
        raise InvalidDatasetError(path, f"byte {err.start}", "<json>", "not UTF-8 text") from err


def load_jsonl(path: str | Path) -> list[Any]:
    """Parse a JSON-lines file; the error names the line that does not parse."""
    path = Path(path)
    if not path.is_file():
        raise InvalidDatasetError(path, "<file>", "<file>", "file not found")
    records = []
    with path.open("r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise InvalidDatasetError(
                    path, f"line {lineno}", "<json>", f"invalid JSON: {err.msg}"
                ) from err
    return records


def require_lists(file: str | Path, data: Any, keys: Iterable[str]) -> list[Problem]:
    """Top level must be an object holding a list under each of ``keys``."""
    if not isinstance(data, dict):
        return [_problem(file, "<top level>", "<json>", f"expected an object, got {_describe(data)}")]
    problems = []
    for key in keys:
        if key not in data:
            problems.append(_problem(file, "<top level>", key, "missing required key"))
        elif not isinstance(data[key], list):
            problems.append(_problem(file, "<top level>", key,
                                     f"expected a list, got {_describe(data[key])}"))
    return problems


def raise_if_any(problems: list[Problem]) -> None:
    if problems:
        raise InvalidDatasetError.from_problems(problems)
