"""typemux-lsp: one Python language server per `.venv`, behind a single LSP endpoint."""

#: The one place the version is written (pyproject.toml reads it): importlib.metadata would
#: cost ~40 ms of start-up, on the client's clock.
__version__ = "0.1.0"

__all__ = ["__version__"]
