"""Images a browser can show: JPEG and PNG as they are, DICOM rendered to an 8-bit PNG.

A DICOM is rendered by `cxr_model.images.decode_image`, the decoder the model's input is made
from: the preview is exactly the image the model saw before its crop and resize (the first
frame through the file's modality and VOI LUTs, MONOCHROME1 inverted). It is for looking at
the image, never for diagnosis.

Every preview is bounded as `/classify` is (`intake.Decoding`): an image of more than
MAX_IMAGE_PIXELS is refused from its header, and at most IMAGE_DECODE_SLOTS DICOMs are rendered at
once (a request past them waits, then gets 503): the History page asks for many previews at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PIL.Image import Image

from cxr_model.images import DICOM, ImageError, check_header_size, decode_image, media_type_of, png_bytes, read_dicom
from gateway.intake import Decoding

PNG = "image/png"


@dataclass(frozen=True)
class Preview:
    data: bytes
    media_type: str


def preview_of(data: bytes, decoding: Decoding) -> Preview:
    """A browser-viewable image of an upload; an ImageError for what cannot be shown."""
    return stored_preview(media_type_of(data), lambda: data, decoding)


def stored_preview(media_type: str, fetch: Callable[[], bytes], decoding: Decoding) -> Preview:
    """A browser-viewable image of the image `fetch` gets, whose media type is known; a DICOM is fetched
    once its decoding slot is held, so requests waiting for one hold no image."""
    if media_type != DICOM:
        data = fetch()
        check_header_size(data, decoding.max_pixels)
        return Preview(data, media_type)
    with decoding.slots.held():  # decode_image checks the DICOM's size from its header before decoding
        return Preview(png_bytes(_rendered_dicom(fetch(), decoding.max_pixels)), PNG)


def _rendered_dicom(data: bytes, max_pixels: int) -> Image:
    try:
        return decode_image(data, max_pixels)
    except ImageError as exc:
        if exc.code == "corrupt_image" and _readable(data):  # a file that parses, with pixels that do not decode
            raise ImageError("dicom_not_renderable", f"the DICOM image cannot be rendered: {exc}") from exc
        raise


def _readable(data: bytes) -> bool:
    try:
        read_dicom(data)
    except ImageError:
        return False
    return True
