"""Values kept only keyed (HMAC-SHA256 with DEIDENTIFICATION_UID_SECRET): found by value, never shown.

An accession number is removed by the PS3.15 basic de-identification profile, yet a hospital system
needs to find its results by it: it is stored as its keyed digest, and a search by the clear value
compares digests. Without the secret a digest cannot be traced back (nor guessed from a dictionary).
"""

import hashlib
import hmac

_ACCESSION_NUMBER = b"accession-number\0"  # keeps these digests apart from the DICOM UID mapping's


def accession_digest(accession_number: str, secret: str) -> str:
    """The stored form of an accession number: 64 hex characters."""
    return hmac.new(secret.encode(), _ACCESSION_NUMBER + accession_number.encode(), hashlib.sha256).hexdigest()
