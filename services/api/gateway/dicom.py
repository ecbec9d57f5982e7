"""DICOM uploads: read them, and de-identify them before anything is stored or sent on.

De-identification follows the DICOM PS3.15 Basic Application Level Confidentiality Profile
by its strictest reading: a new data set is built from an allow-list of attributes that
describe the image and its acquisition (never the patient, the institution or people),
the type 2 identifying attributes are kept present but empty, the instance UIDs are
replaced by UIDs derived from the originals with a secret (so files of one study still
share a study UID), and the file meta information is written anew. Private tags, dates,
names, descriptions, comments and overlays are therefore never copied. Pixel data is kept
as it is: burned-in annotations are not removed (`BurnedInAnnotation` tells).
"""

from __future__ import annotations

import hashlib
import hmac
import io
from dataclasses import dataclass

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, generate_uid

from gateway.errors import ProblemError

MEDIA_TYPE = "application/dicom"
DEIDENTIFICATION_METHOD = "PS3.15 Basic Profile (allow-list)"

KEPT_ATTRIBUTES = (
    "SpecificCharacterSet",
    "ImageType",
    "SOPClassUID",
    "Modality",
    "BodyPartExamined",
    "ViewPosition",
    "Laterality",
    "ImageLaterality",
    "PatientOrientation",
    "BurnedInAnnotation",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PlanarConfiguration",
    "NumberOfFrames",
    "PixelSpacing",
    "ImagerPixelSpacing",
    "PixelAspectRatio",
    "PixelPaddingValue",
    "RescaleIntercept",
    "RescaleSlope",
    "RescaleType",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
    "PresentationLUTShape",
    "LossyImageCompression",
    "LossyImageCompressionRatio",
    "LossyImageCompressionMethod",
    "PixelData",
)
# type 2 in the radiography IODs: present, but empty
EMPTIED_ATTRIBUTES = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyID",
)
REPLACED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")

_READ_ERRORS = (
    InvalidDicomError,
    BytesLengthException,
    OSError,
    ValueError,
    EOFError,
    KeyError,
    TypeError,
    AttributeError,
)


@dataclass(frozen=True)
class DeidentifiedDicom:
    data: bytes
    modality: str | None
    body_part: str | None
    view_position: str | None
    width: int  # Columns: the displayed image's size, without parsing the file again
    height: int  # Rows


def is_dicom(data: bytes) -> bool:
    return data[128:132] == b"DICM"  # a 128-byte preamble, then the magic


def deidentify(data: bytes, uid_secret: str) -> DeidentifiedDicom:
    """The de-identified file and the metadata the gateway keeps; 422 problems for unusable files."""
    original = read_image(data)
    if "SOPClassUID" not in original:
        raise ProblemError(422, "corrupt_image", "the DICOM file has no SOP Class UID")
    clean = Dataset()
    for keyword in KEPT_ATTRIBUTES:
        if keyword in original:
            clean[keyword] = original[keyword]
    for keyword in EMPTIED_ATTRIBUTES:
        setattr(clean, keyword, "")
    for keyword in REPLACED_UIDS:
        if original.get(keyword):
            setattr(clean, keyword, _replacement_uid(str(original[keyword].value), uid_secret))
    clean.SOPInstanceUID = clean.get("SOPInstanceUID") or generate_uid()
    clean.PatientIdentityRemoved = "YES"
    clean.DeidentificationMethod = DEIDENTIFICATION_METHOD
    clean.file_meta = _file_meta(clean, original.file_meta.TransferSyntaxUID)
    return DeidentifiedDicom(
        data=_write(clean),
        modality=_text(clean, "Modality"),
        body_part=_text(clean, "BodyPartExamined"),
        view_position=_text(clean, "ViewPosition"),
        width=int(original.Columns),
        height=int(original.Rows),
    )


def read_image(data: bytes) -> Dataset:
    """The parsed file, which must hold pixel data; 422 problems for what cannot be read."""
    dataset = _read(data)
    if "PixelData" not in dataset:
        raise ProblemError(422, "dicom_without_pixel_data", "the DICOM file holds no image (it has no pixel data)")
    return dataset


def _read(data: bytes) -> Dataset:
    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
        dataset.file_meta.TransferSyntaxUID  # noqa: B018 - a file without one cannot be rewritten
        for keyword in (*KEPT_ATTRIBUTES, *REPLACED_UIDS):  # values are parsed lazily: parse the used ones here
            dataset.get(keyword)
        return dataset
    except _READ_ERRORS as exc:
        raise ProblemError(422, "corrupt_image", f"the DICOM file cannot be read: {exc}") from exc


def _replacement_uid(original: str, secret: str) -> str:
    """The same original UID always maps to the same new one; without the secret it cannot be traced back."""
    digest = hmac.new(secret.encode(), original.encode(), hashlib.sha256).hexdigest()
    return generate_uid(entropy_srcs=[digest])


def _file_meta(dataset: Dataset, transfer_syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def _write(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    try:
        dataset.save_as(buffer, enforce_file_format=True)
    except ValueError as exc:  # e.g. a private transfer syntax pydicom cannot encode for
        raise ProblemError(422, "corrupt_image", f"the DICOM file cannot be rewritten: {exc}") from exc
    return buffer.getvalue()


def _text(dataset: Dataset, keyword: str) -> str | None:
    return str(dataset.get(keyword) or "").strip() or None
