"""Evaluation on a GPU (issue 17), checked on the CPU: the dense net is never autotuned per image
size (cudnn.benchmark is off for its forward passes, whatever a training run left on), the model
is made channels-last on every device, and bf16 autocast is on by default on CUDA only."""

from __future__ import annotations

import torch
from test_evaluate import MEAN, image, net  # noqa: F401  (net: the fixture)

from vggrepro import models
from vggrepro.core.devices import Speed, backend_flags
from vggrepro.evaluate import protocols as ev
from vggrepro.evaluate.protocols import Execution, Protocol


def test_dense_evaluation_autotunes_no_image_size(net, monkeypatch):
    seen = []  # (input size, autotuning on) of each dense forward pass

    def counted(model):
        dense = models.to_dense(model)
        dense.register_forward_pre_hook(
            lambda m, args: seen.append((tuple(args[0].shape[-2:]), torch.backends.cudnn.benchmark))
        )
        return dense

    monkeypatch.setattr(ev, "to_dense", counted)
    images = [(i, image(h, w, i), i % 10) for i, (h, w) in enumerate([(32, 40), (40, 32), (32, 48), (48, 32)])]
    with backend_flags(benchmark=True):  # as a training run in the same process would leave it
        ev.evaluate(net, MEAN, images, Protocol("dense", [32, 40]))
        assert torch.backends.cudnn.benchmark  # put back after the evaluation
    shapes = {s for s, _ in seen}
    assert len(shapes) >= 4  # many sizes were run ...
    assert [s for s, tuned in seen if tuned] == []  # ... and none of them autotuned


def test_training_autotunes_only_while_it_runs():
    before = torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32
    with backend_flags(benchmark=True, tf32=True):
        assert torch.backends.cudnn.benchmark and torch.backends.cuda.matmul.allow_tf32
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32) == before


def test_evaluation_makes_the_model_channels_last_on_any_device():
    model = ev.ready(models.build("A", width=1 / 16, num_classes=4, crop=32), "meta")  # meta: a stand-in GPU
    conv = model.features[0].weight
    assert conv.device.type == "meta" and conv.is_contiguous(memory_format=torch.channels_last)
    assert not model.training


def test_bf16_is_the_default_on_cuda_only_and_close_to_float32_when_asked(net):
    assert Speed.of("cuda").bf16 and Speed.of("cuda:1").bf16 and not Speed.of("cpu").bf16
    images = [(i, image(40, 48, i), i % 10) for i in range(4)]
    fp32 = ev.evaluate(net, MEAN, images, Protocol("both", [32]))
    bf16 = ev.evaluate(net, MEAN, images, Protocol("both", [32]), how=Execution(bf16=True))
    assert not torch.equal(fp32.posteriors, bf16.posteriors)  # bf16 really ran
    torch.testing.assert_close(bf16.posteriors, fp32.posteriors, atol=0.03, rtol=0)
