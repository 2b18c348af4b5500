"""Read the number of reference frames from an H.264 sequence parameter set (SPS).

FFmpeg's motion-vector export does not say which reference a block uses, so a
stream that may use several (or B-frames) cannot be traced back to its I-frame.
The SPS field `max_num_ref_frames` tells us up front (ITU-T H.264, 7.3.2.1.1).
"""

from __future__ import annotations

_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}
_SPS_NAL_TYPE = 7


class _BitReader:
    """Big-endian bit reader with the Exp-Golomb codes of H.264."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._bit = 0

    def bits(self, count: int) -> int:
        value = 0
        for _ in range(count):
            byte = self._data[self._bit // 8]
            value = (value << 1) | ((byte >> (7 - self._bit % 8)) & 1)
            self._bit += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bits(1) == 0:
            zeros += 1
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code % 2 else -(code // 2)


def _skip_scaling_list(reader: _BitReader, size: int) -> None:
    last = next_scale = 8
    for _ in range(size):
        if next_scale != 0:
            next_scale = (last + reader.se()) % 256
        last = last if next_scale == 0 else next_scale


def _sps_reference_frames(nal: bytes) -> int:
    """`max_num_ref_frames` of one SPS NAL unit (header byte included)."""
    reader = _BitReader(nal[1:].replace(b"\x00\x00\x03", b"\x00\x00"))  # drop emulation bytes
    profile = reader.bits(8)
    reader.bits(16)  # constraint flags, level
    reader.ue()  # seq_parameter_set_id
    if profile in _HIGH_PROFILES:
        chroma_format = reader.ue()
        if chroma_format == 3:
            reader.bits(1)  # separate_colour_plane_flag
        reader.ue(), reader.ue(), reader.bits(1)  # bit depths, transform bypass
        if reader.bits(1):  # seq_scaling_matrix_present_flag
            for index in range(8 if chroma_format != 3 else 12):
                if reader.bits(1):
                    _skip_scaling_list(reader, 16 if index < 6 else 64)
    reader.ue()  # log2_max_frame_num_minus4
    poc_type = reader.ue()
    if poc_type == 0:
        reader.ue()
    elif poc_type == 1:
        reader.bits(1), reader.se(), reader.se()
        for _ in range(reader.ue()):
            reader.se()
    return reader.ue()


def _nal_units(data: bytes) -> list[bytes]:
    """NAL units of an avcC record (MP4/MKV extradata) or of an Annex B byte stream."""
    if data[:1] == b"\x01" and len(data) > 8:  # avcC: version 1, then length-prefixed SPS
        count, position, units = data[5] & 0x1F, 6, []
        for _ in range(count):
            length = int.from_bytes(data[position : position + 2], "big")
            units.append(data[position + 2 : position + 2 + length])
            position += 2 + length
        return units
    return data.split(b"\x00\x00\x01")[1:]


def max_reference_frames(data: bytes) -> int | None:
    """Largest `max_num_ref_frames` over the SPS found in `data`; None if there is none."""
    counts = [
        _sps_reference_frames(unit)
        for unit in _nal_units(data)
        if unit and unit[0] & 0x1F == _SPS_NAL_TYPE
    ]
    return max(counts, default=None)
