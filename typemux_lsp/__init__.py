"""typemux-lsp: one Python language server per `.venv`, behind a single LSP endpoint."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("typemux-lsp")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
