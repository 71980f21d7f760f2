"""Loaded by pytest before anything else: pin the CPU kernel paths (``vggrepro.kernels``) for the
test process and every process it starts, the notebooks' kernels under nbval among them, so
that the stored `ci` outputs are compared with numbers computed the same way."""

import vggrepro  # noqa: F401  (importing it pins the kernels, before any torch operation)
