"""Images a browser can show: JPEG and PNG as they are, DICOM rendered to an 8-bit PNG.

A DICOM is rendered by `cxr_model.images.decode_image`, the decoder the model's input is made
from: the preview is exactly the image the model saw before its crop and resize (the first
frame through the file's modality and VOI LUTs, MONOCHROME1 inverted). It is for looking at
the image, never for diagnosis.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL.Image import Image

from cxr_model.images import DICOM, ImageError, decode_image, media_type_of, png_bytes, read_dicom

PNG = "image/png"


@dataclass(frozen=True)
class Preview:
    data: bytes
    media_type: str


def preview_of(data: bytes) -> Preview:
    """A browser-viewable image of an upload or a stored image; an ImageError for what cannot be shown."""
    media_type = media_type_of(data)
    if media_type != DICOM:
        return Preview(data, media_type)
    return Preview(png_bytes(_rendered_dicom(data)), PNG)


def _rendered_dicom(data: bytes) -> Image:
    try:
        return decode_image(data)
    except ImageError as exc:
        if exc.code == "corrupt_image" and _readable(data):  # a file that parses, with pixels that do not decode
            raise ImageError("dicom_not_renderable", f"the DICOM image cannot be rendered: {exc.message}") from exc
        raise


def _readable(data: bytes) -> bool:
    try:
        read_dicom(data)
    except ImageError:
        return False
    return True
