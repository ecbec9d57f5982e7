"""DICOM uploads: read them, and de-identify them before anything is stored or sent on.

De-identification follows the DICOM PS3.15 Basic Application Level Confidentiality Profile
by its strictest reading: a new data set is built from an allow-list of attributes that
describe the image and its acquisition (never the patient, the institution or people),
the type 2 identifying attributes are kept present but empty, the instance UIDs are
replaced by UIDs derived from the originals with a secret (so files of one study still
share a study UID), and the file meta information is written anew. Private tags, dates,
names, descriptions, comments and overlays are therefore never copied. Pixel data is kept
as it is: burned-in annotations are not removed. A file whose pixels may carry them
(`burned_in_text`) is refused or warned of by the gateway's BURNED_IN_ANNOTATION setting.
"""

from __future__ import annotations

import hashlib
import hmac
import io
from dataclasses import dataclass

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import BytesLengthException
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, generate_uid

from cxr_model.images import ImageError, read_dicom
from cxr_model.intended_use import ImageFacts, age_in_years

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
# what a Structured Report filed beside the hospital's image copies from it (patient, study, series, instance)
SOURCE_REFERENCES = (
    "SpecificCharacterSet",
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "SeriesInstanceUID",
    "Modality",
    "SOPClassUID",
    "SOPInstanceUID",
    "Rows",
    "Columns",
)

# what pydicom raises for a value it cannot parse (values are parsed lazily, when first read)
_VALUE_ERRORS = (BytesLengthException, OSError, ValueError, EOFError, KeyError, TypeError, AttributeError)


@dataclass(frozen=True)
class DeidentifiedDicom:
    data: bytes
    # what the original header states of the image, read before de-identification, for the intended-use
    # check; its patient age is never stored (only the age band the check used is)
    facts: ImageFacts
    width: int  # Columns: the displayed image's size, without parsing the file again
    height: int  # Rows
    study_instance_uid: str | None  # the de-identified file's
    sop_instance_uid: str
    burned_in_text: str | None = None  # why the pixels may carry burned-in text (`burned_in_text`), or None

    @property
    def modality(self) -> str | None:
        return self.facts.modality

    @property
    def body_part(self) -> str | None:
        return self.facts.body_part

    @property
    def view_position(self) -> str | None:
        return self.facts.view_position


def deidentify(data: bytes, uid_secret: str) -> DeidentifiedDicom:
    """The de-identified file and the metadata the gateway keeps; an ImageError for an unusable file."""
    original, transfer_syntax = _read(data)
    if "SOPClassUID" not in original:
        raise ImageError("corrupt_image", "the DICOM file has no SOP Class UID")
    clean = Dataset()
    for keyword in KEPT_ATTRIBUTES:
        if keyword in original:
            clean[keyword] = original[keyword]
    for keyword in EMPTIED_ATTRIBUTES:
        setattr(clean, keyword, "")
    for keyword in REPLACED_UIDS:
        if original.get(keyword):
            setattr(clean, keyword, deidentified_uid(str(original[keyword].value), uid_secret))
    clean.SOPInstanceUID = clean.get("SOPInstanceUID") or generate_uid()
    clean.PatientIdentityRemoved = "YES"
    clean.DeidentificationMethod = DEIDENTIFICATION_METHOD
    clean.file_meta = _file_meta(clean, transfer_syntax)
    width, height = int(original.Columns), int(original.Rows)
    return DeidentifiedDicom(
        data=_write(clean),
        facts=header_facts(original, width, height),
        width=width,
        height=height,
        study_instance_uid=clean.get("StudyInstanceUID"),
        sop_instance_uid=clean.SOPInstanceUID,
        burned_in_text=burned_in_text(original),
    )


# Modalities whose images usually carry text in their pixels (ultrasound, endoscopy, external-camera
# photographs, other, documents), and secondary captures (scanned film, screenshots): without a
# BurnedInAnnotation they are taken to carry some. A radiograph (CR, DX) without it is taken not to.
BURNS_IN_TEXT = ("US", "ES", "XC", "OT", "DOC")
SECONDARY_CAPTURE_CLASSES = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage and its multi-frame kin


def burned_in_text(original: Dataset) -> str | None:
    """Why the image may carry burned-in text (names, dates), read from the original header; None if it does not:
    BurnedInAnnotation YES, or none stated for a modality or SOP class that burns text in."""
    stated = _text(original, "BurnedInAnnotation")
    if stated is not None:
        return "BurnedInAnnotation YES" if stated.upper() == "YES" else None
    modality = _text(original, "Modality")
    if modality in BURNS_IN_TEXT:
        return f"no BurnedInAnnotation, Modality {modality}"
    if (_text(original, "SOPClassUID") or "").startswith(SECONDARY_CAPTURE_CLASSES):
        return "no BurnedInAnnotation, a secondary capture"
    return None


def source_references(data: bytes) -> Dataset:
    """The hospital's own patient, study, series and instance attributes of a DICOM file, for the
    Structured Report that is answered in the same request: held in memory only, never stored."""
    original = read_dicom(data)
    references = Dataset()
    try:
        for keyword in SOURCE_REFERENCES:
            if keyword in original:
                references[keyword] = original[keyword]
        references.SOPInstanceUID = str(original.SOPInstanceUID)
        references.SOPClassUID = str(original.SOPClassUID)
    except (*_VALUE_ERRORS, AttributeError) as exc:
        raise ImageError("corrupt_image", f"the DICOM file has no readable SOP Class and Instance UIDs: {exc}") from exc
    return references


def header_facts(original: Dataset, width: int | None = None, height: int | None = None) -> ImageFacts:
    """What the header states for the intended-use check, the patient's age included (from PatientAge, or
    PatientBirthDate and StudyDate): so it is read from the original, before de-identification."""
    return ImageFacts(
        modality=_text(original, "Modality"),
        body_part=_text(original, "BodyPartExamined"),
        view_position=_text(original, "ViewPosition"),
        image_type=_values(original, "ImageType"),
        photometric_interpretation=_text(original, "PhotometricInterpretation"),
        age_years=age_in_years(
            _text(original, "PatientAge"), _text(original, "PatientBirthDate"), _text(original, "StudyDate")
        ),
        width=width,
        height=height,
    )


def _read(data: bytes) -> tuple[Dataset, UID]:
    """The file as the model's decoder reads it (with pixel data and a transfer syntax), with the
    attributes copied here parsed, and its transfer syntax."""
    dataset = read_dicom(data)
    try:
        for keyword in (*KEPT_ATTRIBUTES, *REPLACED_UIDS):
            dataset.get(keyword)
    except _VALUE_ERRORS as exc:
        raise ImageError("corrupt_image", f"the DICOM file cannot be read: {exc}") from exc
    return dataset, dataset.file_meta.TransferSyntaxUID


def deidentified_uid(original: str, secret: str) -> str:
    """The same original UID always maps to the same new one; without the secret it cannot be traced back."""
    digest = hmac.new(secret.encode(), original.encode(), hashlib.sha256).hexdigest()
    return generate_uid(entropy_srcs=[digest])


def _file_meta(dataset: Dataset, transfer_syntax: UID) -> FileMetaDataset:
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
        raise ImageError("corrupt_image", f"the DICOM file cannot be rewritten: {exc}") from exc
    return buffer.getvalue()


def _text(dataset: Dataset, keyword: str) -> str | None:
    """The attribute as text; None when absent, empty or unreadable (a value pydicom cannot parse)."""
    try:
        return str(dataset.get(keyword) or "").strip() or None
    except _VALUE_ERRORS:
        return None


def _values(dataset: Dataset, keyword: str) -> list[str]:
    """A multi-valued attribute's values (ImageType: ORIGINAL\\PRIMARY\\...), stripped; [] when absent or unreadable."""
    try:
        value = dataset.get(keyword)
    except _VALUE_ERRORS:
        return []
    if value is None:
        return []
    values = [value] if isinstance(value, str) else list(value)
    return [str(item).strip() for item in values if str(item).strip()]
