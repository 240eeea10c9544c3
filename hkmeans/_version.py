"""The package version, read by the build (pyproject) and by what records it."""

__version__ = "0.1.0"
