"""CSV exports for administrators: results (with the filters of GET /results) and the audit trail.

The route counts the rows and records the export in its own unit of work; the rows are then
written a page at a time, each page read in a short session of its own (keyset pagination), so a
slow download holds no database connection and pages neither repeat nor skip rows while others
write. An export holds at most EXPORT_MAX_ROWS rows.

Results carry no patient identifiers (DICOM is de-identified before it is stored); the caller's
own references (accession number, external id) are exported as given. A cell that starts with
=, +, -, @ or a tab gets a leading apostrophe, so that a spreadsheet does not run it as a formula
(account names and details of failed sign-ins are typed by anyone).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import sessionmaker

from gateway import crud
from gateway.audit import PendingEvent
from gateway.audit_chain import HASHED_FIELDS
from gateway.db import UnitOfWork
from gateway.exceptions import InvalidInput
from gateway.models import AuditEvent, Result, as_utc
from gateway.principals import Principal
from gateway.settings import Settings

MEDIA_TYPE = "text/csv; charset=utf-8"
_PAGE = 500
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return as_utc(value).astimezone(UTC).isoformat()
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _lines(header: list[str], rows: Iterable[list[Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(value) for value in row])
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def download_headers(kind: str, total: int) -> dict[str, str]:
    """The headers of an export's answer: a file to save, never cached, and its number of rows."""
    name = f"cxr-{kind}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.csv"
    return {
        "Content-Disposition": f'attachment; filename="{name}"',
        "Cache-Control": "private, no-store",
        "X-Total-Count": str(total),
    }


def checked_size(total: int, searched: dict[str, str], settings: Settings, event: PendingEvent) -> int:
    """The number of rows an export would hold, recorded with its filters in the export's audit event;
    `export_too_large` when it is over EXPORT_MAX_ROWS."""
    event.detail = json.dumps({"rows": total, **searched})
    if total > settings.export_max_rows:
        raise InvalidInput(
            "export_too_large",
            f"{total} rows match; narrow the filters (e.g. the dates) to {settings.export_max_rows} or fewer",
        )
    return total


# results

RESULT_COLUMNS = [
    "id",
    "created_at",
    "submitted_by",
    "submitter_kind",
    "model_name",
    "model_version",
    "task",
    "label",
    "finding",
    "probability",
    "positive_class",
    "threshold",
    "ood_flagged",
    "ood_score",
    "ood_threshold",
    "calibration_temperature",
    "probabilities",
    "accession_number",
    "external_id",
    "image_content_type",
    "image_sha256",
    "image_width",
    "image_height",
    "modality",
    "body_part",
    "view_position",
]


def _result_row(result: Result) -> list[Any]:
    answer, image = result.classification, result.image
    finding = next((c.finding for c in answer.classes if c.label == answer.label), "")
    return [
        result.id,
        result.created_at,
        result.submitter_name,
        "user" if result.created_by_id else "client",
        answer.model_name,
        answer.model_version,
        answer.task,
        answer.label,
        finding,
        answer.probabilities.get(answer.label),
        answer.positive_class,
        answer.threshold,
        answer.ood.flagged if answer.ood else None,
        answer.ood.score if answer.ood else None,
        answer.ood.threshold if answer.ood else None,
        answer.calibration.temperature if answer.calibration else None,
        json.dumps(answer.probabilities, separators=(",", ":")),
        result.accession_number,
        result.external_id,
        image.content_type,
        image.sha256,
        image.width,
        image.height,
        image.modality,
        image.body_part,
        image.view_position,
    ]


def _pages(read: Callable[[Any], list[Any]], position: Callable[[Any], Any], limit: int) -> Iterator[Any]:
    """Every item `read(after)` gives, page after page, at most `limit`."""
    after, given = None, 0
    while given < limit:
        page = read(after)[: limit - given]
        yield from page
        given += len(page)
        if len(page) < _PAGE:
            return
        after = position(page[-1])


def results_csv(
    sessions: sessionmaker[UnitOfWork], viewer: Principal, where: crud.ResultFilter, limit: int
) -> Iterator[str]:
    def read(after: Any) -> list[list[Any]]:
        with sessions() as session:
            results = crud.results_after(session, viewer, where, after, _PAGE)
            return [[crud.sort_position(r, where.sort), _result_row(r)] for r in results]

    rows = _pages(read, lambda item: item[0], limit)
    return _lines(RESULT_COLUMNS, (row for _, row in rows))


# the audit trail

AUDIT_COLUMNS = ["seq", *HASHED_FIELDS, "prev_hash", "hash"]


def audit_csv(sessions: sessionmaker[UnitOfWork], where: crud.AuditFilter, limit: int) -> Iterator[str]:
    def read(after: Any) -> list[AuditEvent]:
        with sessions() as session:
            return crud.audit_events_after(session, where, after, _PAGE)

    events = _pages(read, lambda event: (event.occurred_at, event.id), limit)
    return _lines(AUDIT_COLUMNS, ([getattr(event, name) for name in AUDIT_COLUMNS] for event in events))
