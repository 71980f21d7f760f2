"""The book's live training line, read from the runs folder as the training loop writes it."""

import io
import json
import os
import time

from vggrepro.book.progress import EpochWatcher


def _run(folder, epochs_logged, settings):
    folder.mkdir(parents=True)
    (folder / "settings.json").write_text(json.dumps(settings))
    lines = []
    for e in range(1, epochs_logged + 1):
        lines.append(dict(step=10 * e, epoch=e - 1, loss=1.0, lr=0.01))  # a step: not an epoch's end
        lines.append(dict(step=10 * e, epoch=e, top1_err=50.0 - e, top5_err=5.0))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def test_the_line_names_the_net_its_epoch_and_the_time_left_from_the_epochs_it_saw(tmp_path):
    old = tmp_path / "train-A-73-gaussian-0123456789"
    _run(old, 30, dict(used=dict(epochs=30, seed=0)))
    past = time.time() - 3600
    os.utime(old / "metrics.jsonl", (past, past))  # a finished net the chapter reuses: not news
    watcher = EpochWatcher(tmp_path, io.StringIO())
    assert watcher.poll() is None

    new = tmp_path / "train-D-73-from-a-abcdef0123"
    _run(new, 1, dict(used=dict(epochs=30, seed=2)))
    t = watcher.started + 100
    assert watcher.poll(now=t) == "    train-D-73-from-a, seed 2: epoch 1 of at most 30, top-1 error 49.0%"
    assert watcher.poll(now=t + 1) is None  # said once
    _run(new.with_name("unused"), 0, {})  # an empty run folder does not count
    (new / "metrics.jsonl").write_text(
        (new / "metrics.jsonl").read_text() + json.dumps(dict(step=30, epoch=3, top1_err=40.0)) + "\n"
    )
    # two epochs in 80 s: 40 s each, 27 left at most
    assert watcher.poll(now=t + 80) == (
        "    train-D-73-from-a, seed 2: epoch 3 of at most 30, top-1 error 40.0%, "
        "40 s/epoch, at most 18.0 min left in this net"
    )


def test_a_box_regressor_has_epochs_but_no_error_and_the_profile_gives_the_plan(tmp_path):
    run = tmp_path / "loc-PCR-fc-D-73-0123abcdef"
    run.mkdir()
    (run / "settings.json").write_text(json.dumps(dict(seed=0, epochs=4)))
    (run / "metrics.jsonl").write_text(json.dumps(dict(step=5, epoch=1, images=300, loss=0.1)) + "\n")
    watcher = EpochWatcher(tmp_path, io.StringIO())
    watcher.started -= 10
    assert watcher.poll() == "    loc-PCR-fc-D-73, seed 0: epoch 1 of at most 4"


def test_the_watcher_writes_its_lines_to_the_stream_while_the_chapter_runs(tmp_path):
    stream = io.StringIO()
    with EpochWatcher(tmp_path, stream, every=0.02):
        _run(tmp_path / "train-A-73-gaussian-0123456789", 2, dict(used=dict(epochs=30, seed=0)))
        deadline = time.time() + 5
        while "epoch 2 of at most 30" not in stream.getvalue() and time.time() < deadline:
            time.sleep(0.02)
    assert stream.getvalue() == "    train-A-73-gaussian, seed 0: epoch 2 of at most 30, top-1 error 48.0%\n"
