"""ragged: ask questions of your own documents with local models."""

__version__ = "0.2.0"
