"""cvos: real-time video object segmentation in the compressed domain."""

__version__ = "0.1.0"
