"""The package version, importable from every layer without importing the package's API."""

from __future__ import annotations

__all__ = ("__version__",)

__version__ = "0.1.0"
