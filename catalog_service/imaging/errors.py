"""The one error family of imaging/: an input image we will not process, with a reason a merchant can act on."""


class ImageRejected(ValueError):
    """The image cannot be used. Permanent: retrying the same bytes gives the same answer."""


class UnsupportedImage(ImageRejected):
    """Not an image, or a format we do not decode."""


class ImageTooLarge(ImageRejected):
    """More pixels than the configured cap (decompression-bomb guard)."""


class CorruptImage(ImageRejected):
    """Recognised format, but the bytes are truncated or damaged."""
