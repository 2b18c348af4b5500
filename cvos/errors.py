"""Errors caused by user input. Entry points print them as one line, without a traceback."""


class CVOSError(Exception):
    """Base class: something the user gave us is wrong; the message says what and where."""


class CodecError(CVOSError):
    """A video cannot be read or written (missing, not a video, corrupt, unsupported)."""


class CodecIndexError(CodecError, IndexError):
    """A GOP or frame index is outside the video."""


class DataError(CVOSError):
    """A dataset, split file, mask or prepared cache is missing or inconsistent."""


class ConfigError(CVOSError):
    """A configuration value is missing or out of range."""


class CheckpointError(CVOSError):
    """A checkpoint is corrupt or belongs to another model variant."""
