"""Training under torchrun (issue 17): freezing layers works with DDP, and every rank takes the
same lr cuts and stop because the validation counts are summed over the ranks. Two gloo processes
on the CPU stand in for two GPUs."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_train import one_and_two_processes, tiny  # noqa: F401  (tiny: the fixture)
from torch import nn

from vggrepro.train import distributed
from vggrepro.train.loop import PlateauSchedule
from vggrepro.train.validation import validate


def test_fc_only_training_under_two_gloo_processes_freezes_before_wrapping(tiny, tmp_path):
    # Frozen after the DDP wrap, the first backward fails: "Expected to have finished reduction".
    a, b = one_and_two_processes(tiny, tmp_path, "--trainable", "fc", "--dropout", "0", "--epochs", "1")
    for k in a:
        if k.startswith("features."):  # frozen: the seeded init, in both runs
            assert torch.equal(a[k], b[k]), k
        else:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    assert (tmp_path / "two" / "result.json").is_file()


class _Fixed(nn.Module):
    """A 'net' whose answer is the class given in the first input value: right or wrong as we ask."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return nn.functional.one_hot(x[:, 0].long(), 6).float() + self.w


def _rank_validates(rank: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        # rank 0 holds 4 images the net gets right, rank 1 holds 4 it gets wrong (and 2 right)
        answers, labels = ([1, 2, 3, 4], [1, 2, 3, 4]) if rank == 0 else ([0, 0, 5, 5, 1, 2], [1, 1, 2, 2, 1, 2])
        batch = (torch.tensor(answers, dtype=torch.float32)[:, None], torch.tensor(labels))
        schedule = PlateauSchedule(1e-2, patience=0)
        errors = []
        for _ in range(3):  # the same errors each epoch: the schedule sees a plateau and cuts
            top1, top5 = validate(_Fixed(), [batch])
            schedule.step(100 - top1)
            errors.append((top1, top5))
        torch.save(dict(errors=errors, schedule=schedule.state_dict()), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_every_rank_sees_the_pooled_validation_error_and_takes_the_same_lr_cuts(tmp_path):
    mp.spawn(_rank_validates, args=(str(tmp_path / "init"), str(tmp_path / "out")), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"out.{r}", weights_only=True) for r in (0, 1))
    assert r0 == r1
    top1, top5 = r0["errors"][0]
    assert top1 == 100 * 4 / 10  # 6 of the 10 images right, pooled over both ranks
    assert r0["schedule"]["cuts"] == 2


def test_one_process_sums_nothing():
    assert distributed.world() == (0, 1)
    assert distributed.all_sum([1.0, 2.0]) == [1.0, 2.0]
