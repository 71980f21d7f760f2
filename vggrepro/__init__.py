"""vggrepro: a reproducible companion to Simonyan & Zisserman (2014), "Very Deep Convolutional
Networks for Large-Scale Image Recognition".

The package reads like the paper's table of contents plus its machinery. Its wings, in the order
imports flow (a wing imports only the wings before it; tests/test_architecture.py checks it):

- ``models``: section 2, the architectures of Table 1, their counts, their initialisation;
- ``core``: the machinery: project folder, kernels, devices, files, scales, metrics, profiles, runs;
- ``data``: the ILSVRC-2012 layout, decoding, statistics, the training loader, the synthetic set;
- ``train``: section 3.1, the recipe and the one training loop, validation, checkpoints, DDP;
- ``evaluate``: sections 3.2 and 4, the test protocols, fusion, released weights;
- ``localise``: Appendix A, box regression fine-tuned through the same loop, its two protocols;
- ``generalise``: Appendix B, deep features and linear SVMs on other data;
- ``bench``: throughput, MFU and the GPU check;
- ``experiments``: the paper's tables, the grid of nets, claims and verdicts, results, figures;
- ``book``: the papermill runner and its progress;
- ``cli``: every command line (``vggrepro data | train | evaluate | fuse | bench | book``).

The README's "The package" lists every module.
"""

from .core import kernels

kernels.pin()  # before any torch operation: each CPU library reads its vector path once, at first use

__version__ = "0.1.0"

#: the wings, in the order imports flow
WINGS = ("models", "core", "data", "train", "evaluate", "localise", "generalise", "bench", "experiments", "book", "cli")
