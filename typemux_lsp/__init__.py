"""typemux-lsp: one Python language server per `.venv`, behind a single LSP endpoint."""

import time

#: The one place the version is written (pyproject.toml reads it): importlib.metadata would
#: cost ~40 ms of start-up, on the client's clock.
__version__ = "0.1.0"

#: when the process started importing typemux-lsp: the clock of the initialize answer's budget
LAUNCHED = time.monotonic()

__all__ = ["LAUNCHED", "__version__"]
