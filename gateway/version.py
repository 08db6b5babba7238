"""The gateway's version: `gateway --version`, GET /v2 and the package metadata (pyproject.toml) read it."""

__version__ = "0.1.0"
