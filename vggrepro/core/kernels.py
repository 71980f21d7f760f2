"""The CPU kernel paths, pinned so that the `ci` profile gives the same bits on any x86-64 machine.

A training run is chaotic: a 1e-8 difference in one step's weights grows into points of error by
its end. PyTorch's CPU libraries pick their vector code by the processor they find (ATen's
kernels, oneDNN's convolutions, MKL's matrix products), and AVX-512 code sums in another order
than AVX2 code. Pinning all three to AVX2, the widest path every x86-64 machine of the last ten
years has, makes the sums the same everywhere; MKL's STRICT mode also makes its products
independent of how the arrays happen to be aligned in memory. The cost, measured on 2 cores at
`ci` size: 5-20% of training speed.

Each library reads its setting once, at its first use, so the pin must be in the environment
before the first tensor operation: ``import vggrepro`` sets it (an import of torch alone is not a
use), the kernel installed by ``install.sh`` starts with it, and ``tests/conftest.py`` sets it for
the test run and every process it starts. ``check()`` tells a `ci` run whether it holds.

Set ``VGGREPRO_NATIVE_KERNELS=1`` to let the libraries choose (faster on a wide CPU; the `ci`
profile then refuses to run, since its stored outputs could not be reproduced).

What the pin cannot promise: on a processor without AVX2 (ARM, very old x86) the libraries fall
back to other code and the numbers differ; MKL honours its AVX2 branch on Intel processors only
(on AMD, ``MKL_VERBOSE`` reports ``CNR:AUTO``: the same bits run after run on one machine, not
necessarily the same as an Intel machine's). Seen on 2026-12-07: the `ci` outputs stored from a
2-core AMD EPYC did not reproduce on a 2-core Intel Xeon (chapter 2's A ended at 60.6% top-1
error against the stored 54.4), so the stored outputs were made again on the Intel machine; which
library diverges (MKL's products are the documented candidate) is not yet isolated.
"""

from __future__ import annotations

import os
import warnings

#: the environment that pins each library's vector path (read by each at its first use)
PINNED = {
    "ATEN_CPU_CAPABILITY": "avx2",  # ATen's vectorised kernels (elementwise, reductions, resize)
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN: convolutions, pooling
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",  # MKL: the fully connected layers' matrix products
    "MKL_CBWR": "AVX2,STRICT",  # MKL's conditional numerical reproducibility: same sums at any alignment
}
OPT_OUT = "VGGREPRO_NATIVE_KERNELS"


def native() -> bool:
    """True when the user asked for the libraries' own choice of kernels."""
    return os.environ.get(OPT_OUT, "") not in ("", "0")


def pin() -> None:
    """Put the pinned settings in this process's environment (and so in every process it starts)."""
    if not native():
        os.environ.update(PINNED)


def aten_capability() -> str:
    # torch is imported here, not at the top: vggrepro/__init__ imports this module to pin the kernel
    # paths in the environment before anything imports torch, whose libraries read them once
    import torch  # noqa: PLC0415

    return torch.backends.cpu.get_cpu_capability()


def state() -> dict:
    """What this process runs with, for a run's provenance."""
    return dict({k: os.environ.get(k) for k in PINNED}, aten=aten_capability(), native=native())


def check(profile_name: str) -> None:
    """Refuse a `ci` run whose kernels are not pinned: its numbers could not match the stored ones."""
    if profile_name != "ci":
        return
    wrong = [f"{k}={os.environ.get(k)!r}" for k, v in PINNED.items() if os.environ.get(k) != v]
    aten = aten_capability()
    if wrong or native():
        raise ValueError(
            f"the ci profile needs the pinned CPU kernels ({', '.join(wrong) or OPT_OUT + ' is set'}): "
            f"unset {OPT_OUT}, and import vggrepro before running any torch operation"
        )
    if aten not in ("AVX2", "AVX512"):  # a CPU without AVX2: the pin has nothing to hold on to
        warnings.warn(
            f"this CPU offers ATen only {aten} kernels, not AVX2: ci numbers will differ from the "
            "stored ones (see the README)",
            stacklevel=2,
        )
    elif aten != "AVX2":
        raise ValueError(
            f"ATen chose {aten} kernels although ATEN_CPU_CAPABILITY=avx2: a torch operation ran before "
            "vggrepro was imported. Import vggrepro first (or start Python with the variables of "
            "vggrepro.core.kernels.PINNED set)"
        )
