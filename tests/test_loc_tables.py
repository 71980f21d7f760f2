"""The localisation plan of the grid and the assembly of Tables 8 and 9 (vggrepro.experiments.loc_tables),
against the paper's tables and hand-computed cases, with tiny nets standing in for the grid's."""

from __future__ import annotations

import pytest
import torch
from loc_helpers import (
    IDENTITY,
    LIVELY,
    FakeSample,
    image,
    lively_localiser,
    loader_of,
    one_thread,  # noqa: F401 (one_thread: autouse)
    tiny_classifier,
)

from vggrepro.core.profiles import get_profile
from vggrepro.experiments import grid, loc_tables, paper
from vggrepro.localise.protocols import Pass, System, error_of, protocol2_table
from vggrepro.train import checkpoints

CI = get_profile("ci")


# -- the plan ---------------------------------------------------------------------------------------


def test_plan_covers_the_papers_tables():
    for x in grid.LOC_GRID.values():
        assert grid.entry(x.source).config == "D" and x.kind in ("SCR", "PCR") and x.layers in ("fc", "all")
    # Table 8: one net per row of the paper's, all trained at S = 384
    rows = {(r["regression_type"], r["fine_tuned_layers"]) for r in paper.table("table8_localisation_modifications")}
    ours = {(grid.loc_entry(n).kind, loc_tables.LAYERS_IN_PAPER[grid.loc_entry(n).layers]) for n in grid.TABLE8_NETS}
    assert ours == rows and {grid.loc_entry(n).train_S for n in grid.TABLE8_NETS} == {"384"}
    # Table 9: the paper's rows; a single-net row's net is trained at the row's S and tested at its Q
    t9 = paper.table("table9_localisation_error")
    assert [(s.train_S if s.test_Q else None, s.test_Q) for s in grid.TABLE9_SYSTEMS] == [
        (r["train_S"] if r["test_Q"] else None, tuple(r["test_Q"]) if r["test_Q"] else None) for r in t9
    ]
    for s in grid.TABLE9_SYSTEMS:
        if s.test_Q is not None:
            [(name, qs)] = s.nets
            assert grid.loc_entry(name).train_S == s.train_S and qs == s.test_Q
    fusion = grid.TABLE9_SYSTEMS[-1]  # the union of the 256/256 and 384/352,384 rows' nets
    assert fusion.nets == grid.TABLE9_SYSTEMS[0].nets + grid.TABLE9_SYSTEMS[2].nets
    assert grid.entry(grid.LOC_CLASSIFIER).train_S == "[256;512]"
    with pytest.raises(ValueError, match="no localisation entry"):
        grid.loc_entry("SCR, conv")


# -- Table 8 ----------------------------------------------------------------------------------------


def test_table8_rows_put_each_error_beside_the_papers_row():
    rows = loc_tables.table8_rows({"SCR, fc": 1.0, "PCR, fc": 2.0, "PCR, all": 3.0}, {"crop": 4.0, "image": 5.0})
    got = [
        (r["fine_tuned_layers"], r["regression_type"], r["paper gt_class_loc_err"], r["ours gt_class_loc_err"])
        for r in rows
    ]
    assert got == [
        ("1st and 2nd FC", "SCR", 36.4, 1.0),
        ("1st and 2nd FC", "PCR", 34.3, 2.0),
        ("all", "PCR", 33.1, 3.0),
        ("whole crop (no net)", "-", None, 4.0),
        ("whole image (no net)", "-", None, 5.0),
    ]
    assert loc_tables.table8_Q(CI) == CI.S(384) == 55


# -- Table 9 ----------------------------------------------------------------------------------------


def _nets(crop=32, classes=4):
    a, b = (
        lively_localiser("PCR", crop=crop, classes=classes, seed=5),
        lively_localiser("PCR", crop=crop, classes=classes, seed=6),
    )
    return loc_tables.LocNets(
        {"PCR, all, S=256": a, "PCR, all": b}, {}, {"PCR, all, S=256": LIVELY, "PCR, all": LIVELY}
    )


def test_table9_systems_in_the_profiles_pixels():
    nets = _nets()
    systems = loc_tables.table9_systems(CI, nets)
    fusion = loc_tables.fusion_key()
    assert fusion == "fusion: 256/256 and 384/352,384"
    assert list(systems) == [("256", (256,)), ("384", (384,)), ("384", (352, 384)), (fusion, None)]
    assert systems[("384", (352, 384))].scales == ((CI.S(352), CI.S(384)),) == ((50, 55),)
    f = systems[(fusion, None)]
    assert f.localisers == (nets.nets["PCR, all, S=256"], nets.nets["PCR, all"]) and f.scales == ((37,), (50, 55))
    assert [loc_tables.our_Q(CI, k) for k in systems] == ["37", "55", "50,55", "37 and 50,55"]


def test_protocol2_runs_and_table9_rows_equal_each_system_alone():
    nets = _nets()
    systems = loc_tables.table9_systems(CI, nets)
    clf = tiny_classifier(32, 4, seed=7).eval()
    rng = torch.Generator().manual_seed(0)
    images, samples = {}, []
    for i in range(8):
        h, w = 40 + 3 * i, 80 - 4 * i
        images[str(i)] = image(h, w, i)
        samples.append(FakeSample(str(i), i % 4, [[w * 0.2, h * 0.1, w * 0.8, h * 0.9]]))
    post = torch.rand(8, 4, generator=rng)
    cls = loc_tables.Classifier(post, clf, LIVELY, 0.0)
    right = loc_tables.protocol2_runs(systems, cls, samples, load_image=loader_of(images), top_left=("384", (384,)))
    assert len(right) == 2 * len(systems) + 1
    run = dict(
        classifier=clf,
        classifier_preprocess=LIVELY,
        per_image=True,
        how=Pass(load_image=loader_of(images), progress=False),
    )
    for key, s in systems.items():
        for where, system in (("dense", s), ("centre", System(s.localisers, s.scales, s.preprocess, centre=True))):
            assert torch.equal(right[(where,) + key], protocol2_table({"x": system}, post, samples, **run)["x"])
    rows = loc_tables.table9_rows(CI, right)
    assert [r["paper top5_loc_err_val"] for r in rows] == [29.5, 28.2, 27.5, 26.9]
    assert [r["test_Q"] for r in rows] == [[256], [384], [352, 384], None]
    for r, key in zip(rows, systems):
        assert r["ours top5_loc_err_val"] == error_of(right[("dense",) + key])
        assert r["ours, central crop only"] == error_of(right[("centre",) + key])
        assert r["our Q"] == loc_tables.our_Q(CI, key)
    shown = loc_tables.table9_whole(CI, right)  # as the chapter shows it: the paper's test column too
    assert [r[f"paper top5_loc_err_test: {paper.TEST_SET}"] for r in shown] == ["-", "26.7", "-", "25.3"]
    assert [r["ours top5_loc_err_val"] for r in shown] == [paper.fmt(r["ours top5_loc_err_val"]) for r in rows]
    assert [r["test_Q"] for r in shown] == ["256", "384", "352,384", "-"]


def test_windows_per_image_by_hand():
    net = tiny_classifier(32)
    # at Q = 32: 32x55 stays (1 x 1 windows: 55 px hold one 32-px window at stride 32); 40x80 -> 32x64 (1 x 2);
    # 64x64 -> 32x32 (1); 40x120 -> 32x96 (1 x 3)
    sizes = [(32, 55), (40, 80), (64, 64), (40, 120)]
    assert loc_tables.windows_per_image(net, sizes, 32).tolist() == [1, 2, 1, 3]
    assert loc_tables.share_of_one_window(net, sizes, 32) == 50.0


def test_classification_system_puts_posteriors_in_sample_order(monkeypatch):
    """The cached evaluation holds the images in its own order (``indices``): rows go back to the samples'."""
    samples = [FakeSample(str(i), label) for i, label in enumerate([2, 0, 1])]
    order = torch.tensor([2, 0, 1])  # evaluation row k is sample order[k]
    post = torch.tensor([[0.1, 0.2, 0.7], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
    evaluated = dict(posteriors=post, indices=order, labels=torch.tensor([1, 2, 0]))
    asked = []
    monkeypatch.setattr(grid, "checkpoint", lambda profile, name, seed=None: asked.append(name) or "ckpt")
    monkeypatch.setattr(
        loc_tables,
        "evaluate_cached",
        lambda path, profile, protocol: asked.append((protocol.name, list(protocol.scales))) or evaluated,
    )
    net = tiny_classifier(32, 3)
    monkeypatch.setattr(checkpoints, "model_from_checkpoint", lambda path: (net, {"preprocess": IDENTITY.as_dict()}))
    cls = loc_tables.classification_system(CI, samples, device="cpu")
    assert torch.equal(cls.posteriors, post[[1, 2, 0]]) and cls.net is net
    assert asked == ["D/jit", ("dense", grid.test_scales_of(CI, "[256;512]", True))]
    with pytest.raises(ValueError, match="other images"):
        loc_tables.classification_system(CI, samples[::-1], device="cpu")


def test_finetune_grid_uses_the_profiles_dropout_and_device(tmp_path, monkeypatch):
    """Every net of the plan, fine-tuned from its source entry's checkpoint (here a tiny net's) with
    the profile's dropout (ci: 0), on the device asked for."""
    monkeypatch.setenv("VGGREPRO_RUNS", str(tmp_path / "runs"))
    net = tiny_classifier(32, 3)
    path = tmp_path / "source.pt"
    checkpoints.save(dict(model=net.state_dict(), meta=checkpoints.model_meta(net, IDENTITY)), path)
    monkeypatch.setattr(grid, "checkpoint", lambda profile, name, seed=None: path)
    images = {str(i): image(64, 72, i) for i in range(6)}
    samples = [FakeSample(str(i), i % 3, [[8, 8, 50, 40]]) for i in range(6)]
    moved = []
    real_to = torch.nn.Module.to
    monkeypatch.setattr(
        torch.nn.Module, "to", lambda m, *a, **k: moved.append(str(a[0]) if a else "") or real_to(m, *a, **k)
    )
    out = loc_tables.finetune_grid(
        CI.replace(batch_size=4),
        samples,
        names=["SCR, fc", "PCR, all, S=256"],
        epochs=1,
        device="cpu:0",
        load_image=loader_of(images),
    )
    assert list(out.nets) == ["SCR, fc", "PCR, all, S=256"] and moved.count("cpu:0") >= 4
    for name, result in out.results.items():
        assert result["settings"]["dropout"] == 0.0 and result["settings"]["source"] == grid.loc_entry(name).source
        assert result["S"] == grid.scale_of(CI, grid.loc_entry(name).train_S)
        assert [m.p for m in out.nets[name].modules() if isinstance(m, torch.nn.Dropout)] == [0.0, 0.0]
