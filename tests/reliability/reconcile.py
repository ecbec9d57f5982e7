"""Reconciliation: what the callers were told against the database rows and the bucket's objects.

Exact when every list below is empty: each 2xx result id has exactly one row whose image
object exists, every object in the bucket
belongs to a row, every image row has its object, and each Idempotency-Key stored at most
one result, the one all its 2xx answers named.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from reliability.load import LoadReport


@dataclass
class Reconciliation:
    rows: int = 0
    objects: int = 0
    answered: int = 0  # distinct result ids in 2xx answers
    answered_without_row: list[str] = field(default_factory=list)
    image_rows_without_result: list[str] = field(default_factory=list)
    rows_without_object: list[str] = field(default_factory=list)
    objects_without_row: list[str] = field(default_factory=list)
    duplicate_idempotent_rows: list[str] = field(default_factory=list)
    idempotent_answers_disagree: list[str] = field(default_factory=list)

    def problems(self) -> dict[str, list[str]]:
        checks = {name: value for name, value in vars(self).items() if isinstance(value, list)}
        return {name: found[:10] for name, found in checks.items() if found}

    @property
    def exact(self) -> bool:
        return not self.problems()

    def summary(self) -> dict:
        counts = {name: len(value) for name, value in vars(self).items() if isinstance(value, list)}
        return {"rows": self.rows, "objects": self.objects, "answered": self.answered, "exact": self.exact} | counts


def stored_rows(database_dsn: str) -> tuple[list[tuple], list[str]]:
    """(result id, image key, scoped idempotency key) per result; image keys without a result."""
    with psycopg.connect(database_dsn) as connection:
        results = connection.execute(
            "SELECT r.id::text, i.object_key, r.idempotency_key FROM results r JOIN images i ON i.id = r.image_id"
        ).fetchall()
        lonely = connection.execute(
            "SELECT i.object_key FROM images i WHERE NOT EXISTS (SELECT 1 FROM results r WHERE r.image_id = i.id)"
        ).fetchall()
    return results, [key for (key,) in lonely]


def bucket_keys(s3_client, bucket: str) -> set[str]:
    keys: set[str] = set()
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys |= {item["Key"] for item in page.get("Contents", [])}
    return keys


def reconcile(database_dsn: str, s3_client, bucket: str, load: LoadReport | None = None) -> Reconciliation:
    results, lonely_images = stored_rows(database_dsn)
    objects = bucket_keys(s3_client, bucket)
    referenced = {image_key for _, image_key, _ in results}
    found = Reconciliation(rows=len(results), objects=len(objects))
    found.image_rows_without_result = lonely_images
    found.rows_without_object = sorted((referenced | set(lonely_images)) - objects)
    found.objects_without_row = sorted(objects - referenced - set(lonely_images))
    if load is not None:
        _check_answers(found, results, load)
    return found


def _check_answers(found: Reconciliation, results: list[tuple], load: LoadReport) -> None:
    row_ids = {result_id for result_id, *_ in results}
    answered = load.result_ids()
    found.answered = len(answered)
    found.answered_without_row = sorted(answered - row_ids)
    rows_by_key: dict[str, list[str]] = {}
    for result_id, _, scoped_key in results:
        if scoped_key:  # "<kind>:<submitter id>:<Idempotency-Key>"
            rows_by_key.setdefault(scoped_key.split(":", 2)[2], []).append(result_id)
    for key, answer_ids in load.answers_by_key().items():
        stored = rows_by_key.get(key, [])
        if len(stored) > 1:
            found.duplicate_idempotent_rows.append(key)
        if answer_ids and (len(answer_ids) > 1 or answer_ids != set(stored)):
            found.idempotent_answers_disagree.append(key)
