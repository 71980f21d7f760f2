"""The one-command GPU check's dry run: the same steps as on a GPU, on the CPU at toy size, each
recorded with its figures (issue 17). CI runs it so that the check works the day a GPU is there."""

from __future__ import annotations

import json

from vggrepro.cli import main as cli


def test_the_dry_run_runs_every_step_and_records_it(tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    assert cli.main(["bench", "gpu", "--dry-run", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    steps = record["steps"]
    assert set(steps) == {"fp32", "tf32+cl", "bf16+cl", "train_loop", "dense_eval", "jpeg_decode", "resume"}
    assert all(s["ok"] for s in steps.values()), {k: s.get("error") for k, s in steps.items()}
    assert (steps["fp32"]["precision"], steps["tf32+cl"]["precision"], steps["bf16+cl"]["precision"]) == (
        "fp32",
        "tf32",
        "bf16",
    )
    assert len(steps["train_loop"]["img_per_s_by_epoch"]) == 2
    assert sorted(steps["dense_eval"]["by_Q"], key=int) == ["37", "55", "73"]
    assert steps["jpeg_decode"]["img_per_s"] > 0
    assert steps["resume"]["interrupted_after_step"] == 2 and steps["resume"]["bit_equal"]  # exact on a CPU
    assert record["dry_run"] and record["provenance"]["commit"] and record["seconds"] < 60
