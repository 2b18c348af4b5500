"""The compressed domain: encode videos, then read images, motion vectors and residuals.

Writer (`encode_video`): MPEG-4 Part 2 by default (coviar's format; `.m4v` raw
elementary stream or `.mp4`/`.avi`/`.mkv`), or H.264 (libx264). Every GOP has exactly
`gop_size` frames (default 12; scene-cut detection off), no B-frames, one reference
frame. `quality` is the MPEG-4 fixed quantiser, 1 (best) .. 31 (default 5), or the
H.264 CRF, 0 (best) .. 51. Frames whose size is not a multiple of `pad_multiple`
(default 16) are padded on the right and bottom by repeating the last column/row, so
pixels stay aligned with the masks; `EncodedVideo` records the original size: crop
`[:height, :width]` to undo it (DAVIS 854x480 is coded as 864x480).

Reader (`CompressedVideo`): frames in decode order, each decoded once, with `bgr`,
`mv`, `mv_acc`, `residual`, `residual_acc` in coviar's conventions:
- `bgr`: uint8 H x W x 3, FFmpeg's own bgr24 conversion (bit-exact with coviar);
- `mv`: int32 H x W x 2, (dx, dy) = dst - src in whole pixels (FFmpeg truncates
  sub-pixel motion toward zero); each moving block fills its pixels whose source is
  inside the frame, in FFmpeg's record order; zero-motion and intra blocks stay 0;
- `mv_acc`: total displacement back to the GOP's I-frame (coviar's traced source map);
- `residual`: int32 BGR `cur[y, x] - prev[y - dy, x - dx]`;
- `residual_acc`: int32 BGR `cur[y, x] - iframe[y - ady, x - adx]`;
  `residual_acc_at(rows, cols)` computes it at a grid of pixels alone (what a sampler reads);
- all motion vectors and residuals are zero at the I-frame.
`gop(k)` decodes only GOP k, starting at its I-frame (raw streams included). A
background thread decodes one frame ahead of the caller; the per-pixel loops are
compiled C (`_kernels.c`) that runs without the GIL. `gop_steps(k)` decodes GOP k on
the caller's thread, step by step, and converts a frame's image (and paints its plain
vectors) only when the step's `frame` is read: training streams pass over most frames.
H.264 streams with B-frames or more than one reference frame are refused with a
message pointing to `encode_video`.

`load(path, gop_index, frame_index, representation, accumulate)` and
`get_num_frames(path)` reproduce pytorch-coviar, where coviar is right. Differences:
coviar never decodes the last frame (its `get_num_frames` is one short and `load`
returns zeros there) — here the count is true and the last frame is decoded; coviar's
last `W % 8` image columns are uninitialised memory when W is not a multiple of 8 —
here they are the decoded pixels; coviar returns zeros for a `frame_index` past the
end of its GOP, crashes the interpreter for a `gop_index` past the last GOP and
returns None for a missing file — here `CodecIndexError`/`CodecError` name the file;
for a P-frame where FFmpeg exports no motion vectors at all (every block intra)
coviar returns zero residuals — here the residual is `cur - prev` (zero motion).
Missing, non-video, audio-only, truncated and corrupt files raise `CodecError` with
the path; FFmpeg's error concealment is not trusted.

`RepresentationCache(root).get_or_extract(path)`: every representation of a video
stored once in compact dtypes (int16 motion and residuals), keyed by a hash of the
file's bytes and of the extraction format, written atomically, memory-mapped on read.
"""

from cvos.codec.cache import CachedRepresentations, RepresentationCache
from cvos.codec.canonical import canonical_video, is_canonical
from cvos.codec.coviar import get_num_frames, load
from cvos.codec.reader import CompressedFrame, CompressedVideo, DecodedStep, Picture, PictureType
from cvos.codec.writer import EncodedVideo, EncodeSettings, EncodeSettingsError, encode_video

__all__ = [
    "CachedRepresentations",
    "CompressedFrame",
    "CompressedVideo",
    "DecodedStep",
    "EncodeSettings",
    "EncodeSettingsError",
    "EncodedVideo",
    "Picture",
    "PictureType",
    "RepresentationCache",
    "canonical_video",
    "encode_video",
    "get_num_frames",
    "is_canonical",
    "load",
]
