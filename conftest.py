"""Loaded by pytest before anything else: pin the CPU kernel paths (``vggrepro.core.kernels``) for the
test process and every process it starts, the notebooks' kernels under nbval among them, so
that the stored `ci` outputs are compared with numbers computed the same way."""

from pathlib import Path

import vggrepro  # noqa: F401  (importing it pins the kernels, before any torch operation)


def pytest_configure(config):
    # pyproject's addopts names nbval's sanitize file relative to the project; anchor it there, so
    # that `pytest --nbval 01_architecture.ipynb` works from book/ or any other folder too.
    path = getattr(config.option, "nbval_sanitize_with", None)
    if path and not Path(path).is_absolute():
        config.option.nbval_sanitize_with = str(Path(config.rootpath) / path)
