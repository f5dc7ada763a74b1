"""The project's one error type for bad input data."""

from __future__ import annotations

from typing import Any


class InvalidDatasetError(ValueError):
    """Input data that the pipeline refuses, located precisely.

    The message always names the file, the record and the field, e.g.::

        data/01_raw/x/instances.json: annotation id=17: field 'bbox': extends past the image (64x64)

    ``problems`` holds every problem found (``file``, ``record``, ``field``, ``message`` dicts),
    the message shows the first few; ``report`` carries the validation report when one was built.
    """

    def __init__(
        self,
        file: str,
        record: str,
        field: str,
        message: str,
        *,
        problems: list[dict[str, Any]] | None = None,
        report: dict[str, Any] | None = None,
    ):
        self.file, self.record, self.field, self.reason = str(file), record, field, message
        self.problems = problems or [
            {"file": self.file, "record": record, "field": field, "message": message}
        ]
        self.report = report
        text = f"{self.file}: {record}: field '{field}': {message}"
        extra = len(self.problems) - 1
        if extra > 0:
            shown = self.problems[1:4]
            text += "".join(
                f"\n  {p['file']}: {p['record']}: field '{p['field']}': {p['message']}" for p in shown
            )
            if extra > len(shown):
                text += f"\n  ... and {extra - len(shown)} more problem(s)"
        super().__init__(text)

    @classmethod
    def from_problems(
        cls, problems: list[dict[str, Any]], report: dict[str, Any] | None = None
    ) -> InvalidDatasetError:
        first = problems[0]
        return cls(
            first["file"], first["record"], first["field"], first["message"],
            problems=problems, report=report,
        )
