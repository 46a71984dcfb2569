"""An image file's structure, checked before decoding: bytes after the image, and JPEG scans.

Decoders stop at the image's end and ignore what follows, so a valid image can carry a second
file (a polyglot: a JPEG with a ZIP or a PHP script appended). And a progressive JPEG can repeat a
tiny scan thousands of times, each costing a pass over the whole image: a few hundred kilobytes
that take minutes of CPU to decode. Walking the file's segments finds both without decoding.
"""

import re
import struct

from leafwatch.errors import InvalidImage

# libjpeg writes 10 scans, mozjpeg about 20; each costs a pass over the whole image (some 30 ms at
# 35 megapixels here, however small the scan), so the limit bounds the CPU a JPEG can take.
MAX_JPEG_SCANS = 50

# In entropy-coded data 0xFF is followed by 0x00 (a stuffed byte) or a restart marker; any other
# byte after it starts a marker (0xFF 0xFF is fill before one).
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_MPF_ENTRIES = 0xB002
_MPF_ENTRY_BYTES = 16


def check_structure(data: bytes, image_format: str) -> None:
    """Refuse bytes after the image's end and JPEGs with too many scans; raises InvalidImage.

    A file too damaged to walk is let through: the decoder then says what is wrong with it.
    """
    if image_format in ("JPEG", "MPO"):
        end = jpeg_end(data)
    elif image_format == "PNG":
        end = png_end(data)
    elif image_format == "WEBP":
        end = webp_end(data)
    else:
        return
    if end is None:
        return
    # Some writers pad a file with zero bytes; anything else after the image is a second file.
    if data[end:].strip(b"\0"):
        raise InvalidImage(
            "trailing_data",
            f"the file has {len(data) - end} bytes after the end of its {image_format} image "
            "(a second file appended?); send the image alone",
        )


def jpeg_end(data: bytes) -> int | None:
    """Offset just past a JPEG's end, or of the last image its MPF index declares after it.

    Raises InvalidImage when the image has more than MAX_JPEG_SCANS scans; None if damaged.
    """
    size = len(data)
    pos, scans, declared_end = 2, 0, 0
    while pos + 2 <= size:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # end of image
            return max(pos + 2, declared_end)
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a segment
            pos += 2
            continue
        if pos + 4 > size:
            return None
        (length,) = struct.unpack_from(">H", data, pos + 2)
        segment_end = pos + 2 + length
        if length < 2 or segment_end > size:
            return None
        if marker == 0xE2 and data[pos + 4 : pos + 8] == b"MPF\0":
            # Multi-picture files (phone HDR gain maps, stereo pairs) put their other images
            # after the first one's end, and say where in this index.
            declared_end = _mpf_end(data, pos + 8, segment_end)
        if marker != 0xDA:
            pos = segment_end
            continue
        scans += 1
        if scans > MAX_JPEG_SCANS:
            raise InvalidImage(
                "too_many_scans",
                f"the JPEG has more than {MAX_JPEG_SCANS} scans; encoders write about ten",
            )
        found = _JPEG_MARKER.search(data, segment_end)
        if found is None:
            return None
        pos = found.start()
    return None


def _mpf_end(data: bytes, base: int, limit: int) -> int:
    """The end of the last image an MPF index (a TIFF structure at `base`) declares, or 0."""
    order = {b"II": "<", b"MM": ">"}.get(data[base : base + 2])
    if order is None or base + 8 > limit:
        return 0
    (ifd,) = struct.unpack_from(order + "I", data, base + 4)
    if base + ifd + 2 > limit:
        return 0
    (count,) = struct.unpack_from(order + "H", data, base + ifd)
    for index in range(count):
        entry = base + ifd + 2 + 12 * index
        if entry + 12 > limit:
            return 0
        tag, _kind, length, offset = struct.unpack_from(order + "HHII", data, entry)
        if tag != _MPF_ENTRIES:
            continue
        if base + offset + length > limit:
            return 0
        end = 0
        for start in range(base + offset, base + offset + length - 15, _MPF_ENTRY_BYTES):
            _attributes, image_size, image_offset = struct.unpack_from(order + "III", data, start)
            if image_offset:  # the first image's offset is 0: it is the file itself
                end = max(end, base + image_offset + image_size)
        return end
    return 0


def png_end(data: bytes) -> int | None:
    """Offset just past a PNG's IEND chunk, or None if the chunks do not lead there."""
    pos, size = 8, len(data)
    while pos + 12 <= size:
        length, kind = struct.unpack_from(">I4s", data, pos)
        pos += 12 + length
        if kind == b"IEND":
            return pos if pos <= size else None
    return None


def webp_end(data: bytes) -> int | None:
    """Offset just past a WebP's RIFF container, or None if the file is shorter."""
    if len(data) < 12:
        return None
    (length,) = struct.unpack_from("<I", data, 4)
    end = 8 + length + (length & 1)  # RIFF pads an odd-sized payload to even
    return end if end <= len(data) else None
