"""DICOMweb STOW-RS intake (PS3.18 10.5): instances pushed by a router or PACS, each classified as /classify does.

Each instance is its own unit of work (what one classification commits), so a refused instance leaves
the others stored; it goes the same way as an upload to /classify (intended use, de-identification,
storage), with the instance's de-identified SOP Instance UID as its idempotency key: the same
instance sent again answers its first result. The answer is the standard store response: the stored
instances in ReferencedSOPSequence (with the result's URL), the refused ones in FailedSOPSequence with
a failure reason, each named by the hospital's own SOP Class and Instance UIDs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydicom import Dataset
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from cxr_model.images import DICOM, ImageError
from gateway import dicom
from gateway.classification import Classified, Upload
from gateway.exceptions import OutsideIntendedUse, Refused

MEDIA_TYPE = "application/dicom+json"
# PS3.18 table 10.5.3-3 and PS3.7 C.4.2 failure reasons
PROCESSING_FAILURE = 0x0110
SOP_CLASS_NOT_SUPPORTED = 0x0122  # here: an image outside the intended use of every deployed model
CANNOT_UNDERSTAND = 0xC000
DUPLICATE_SOP_INSTANCE = 0x0111  # an instance UID sent before with other content


@dataclass(frozen=True)
class Outcome:
    """One instance's fate: its result, or the reason it was refused."""

    sop_class_uid: str
    sop_instance_uid: str
    result_url: str | None = None
    failure_reason: int | None = None


def instances(content_type: str, body: bytes) -> list[bytes]:
    """The DICOM files of a multipart/related; type="application/dicom" body."""
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/related" or options.get(b"type", DICOM.encode()) != DICOM.encode() or not boundary:
        raise ImageError("unsupported_media_type", 'send multipart/related; type="application/dicom" with a boundary')
    parts: list[bytearray] = []
    callbacks = {
        "on_part_begin": lambda: parts.append(bytearray()),
        "on_part_data": lambda data, start, end: parts[-1].extend(data[start:end]),
    }
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except (MultipartParseError, ValueError) as exc:
        raise ImageError("unsupported_media_type", f"the multipart body cannot be read: {exc}") from exc
    if not parts:
        raise ImageError("unsupported_media_type", "the multipart body holds no part")
    return [bytes(part) for part in parts]


def store(
    files: list[bytes],
    classify: Callable[[Upload], Classified],
    uid_secret: str,
) -> list[Outcome]:
    """Each file classified by `classify` (its own unit of work), in order."""
    return [_stored(data, classify, uid_secret) for data in files]


def _stored(data: bytes, classify: Callable[[Upload], Classified], uid_secret: str) -> Outcome:
    try:
        source = dicom.source_references(data)
    except ImageError:
        return Outcome("", "", failure_reason=CANNOT_UNDERSTAND)
    named = {"sop_class_uid": source.SOPClassUID, "sop_instance_uid": source.SOPInstanceUID}
    key = f"sop:{dicom.deidentified_uid(source.SOPInstanceUID, uid_secret)}"
    try:
        classified = classify(Upload(data, model=None, idempotency_key=key))
    except (Refused, ImageError) as refused:
        return Outcome(**named, failure_reason=_failure_reason(refused))
    return Outcome(**named, result_url=f"results/{classified.result.id}")


def _failure_reason(refused: Refused | ImageError) -> int:
    if isinstance(refused, OutsideIntendedUse):
        return SOP_CLASS_NOT_SUPPORTED
    if isinstance(refused, ImageError):
        return CANNOT_UNDERSTAND
    if refused.code == "idempotency_key_reused":
        return DUPLICATE_SOP_INSTANCE
    return PROCESSING_FAILURE


def response(outcomes: list[Outcome], base_url: str) -> tuple[int, dict[str, object]]:
    """The HTTP status (200 all stored, 202 some refused, 409 none stored) and the PS3.18 JSON answer."""
    stored = [_referenced(o, base_url) for o in outcomes if o.failure_reason is None]
    failed = [_failed(o) for o in outcomes if o.failure_reason is not None]
    answer = Dataset()
    if stored:
        answer.ReferencedSOPSequence = stored
    if failed:
        answer.FailedSOPSequence = failed
    status = 200 if not failed else 202 if stored else 409
    return status, answer.to_json_dict()


def _referenced(outcome: Outcome, base_url: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = outcome.sop_class_uid
    item.ReferencedSOPInstanceUID = outcome.sop_instance_uid
    item.RetrieveURL = f"{base_url}{outcome.result_url}"
    return item


def _failed(outcome: Outcome) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = outcome.sop_class_uid
    item.ReferencedSOPInstanceUID = outcome.sop_instance_uid
    item.FailureReason = outcome.failure_reason
    return item
