"""The experiment grid as data: entries, seeds as whole chains, matched budgets."""

import pytest

from vggrepro.core.profiles import get_profile
from vggrepro.experiments import grid, paper
from vggrepro.localise.finetune import FinetuneSettings


def test_each_seed_is_a_whole_chain_and_the_profile_seed_keeps_its_run_key(tmp_path, monkeypatch):
    monkeypatch.setenv("VGGREPRO_RUNS", str(tmp_path / "runs"))
    prof = get_profile("ci")
    default, same, other = (grid.settings_of(prof, "D/256", s) for s in (None, prof.seed, prof.seed + 1))
    assert default == same and default.seed is None  # runs made before seeds existed are found again
    assert other.seed == prof.seed + 1
    # D of seed s starts from A of seed s
    assert other.init.endswith(str(grid.run_of(prof, "A/256", prof.seed + 1).checkpoint))
    assert default.init.endswith(str(grid.run_of(prof, "A/256").checkpoint))
    assert grid.run_of(prof, "D/256", prof.seed + 1).id != grid.run_of(prof, "D/256").id


def test_a_later_chain_shows_and_trains_its_own_nets_only(tmp_path, monkeypatch):
    """At first_chain=K every net a chapter asks for without a seed is chain K's (the claims'
    own): a chain run from an empty runs/ never trains chain 0's nets again."""

    monkeypatch.setenv("VGGREPRO_RUNS", str(tmp_path / "runs"))
    prof = get_profile("ci")
    later = prof.replace(first_chain=2)
    assert later.chain_seed == prof.seed + 2 == grid.chain_seeds(later)[0]
    for name in ("A/256", "D/256", "D/jit", "D/256-glorot"):
        assert grid.run_of(later, name).id == grid.run_of(later, name, prof.seed + 2).id
        assert grid.run_of(later, name).id != grid.run_of(prof, name).id
    assert grid.run_of(later, "A/256", prof.seed).id == grid.run_of(prof, "A/256").id  # chain 0 is still chain 0
    assert FinetuneSettings.of_profile(later, "PCR", "all", 73).seed == prof.seed + 2
    assert FinetuneSettings.of_profile(prof, "PCR", "all", 73).seed == prof.seed
    # the data are the profile's seed's in every chain
    assert later.seed == prof.seed


def test_glorot_d_gets_the_epochs_of_the_chain_it_is_compared_with():
    prof = get_profile("ci")
    assert grid.settings_of(prof, "D/256-glorot").epochs == grid.entry("A/256").budget * prof.epochs * 2
    assert grid.settings_of(prof, "A/256").epochs is None  # the profile's


def test_b_from_scratch_matches_b_5x5():
    b, b5 = grid.entry("B/256-scratch"), grid.entry("B-5x5/256")
    assert (b.init, b.source, b.budget, b.train_S) == (b5.init, b5.source, b5.budget, b5.train_S)


def test_chains_start_at_the_profile_seed_and_are_distinct():
    prof = get_profile("ci")
    assert grid.chain_seeds(prof) == [prof.seed]  # the ci book trains one chain
    assert grid.chain_seeds(prof, 3) == [prof.seed, prof.seed + 1, prof.seed + 2]
    assert grid.chain_seeds(prof.replace(chains=2)) == [prof.seed, prof.seed + 1]
    other = get_profile("ci", seed=prof.seed + 7)
    assert grid.chain_seeds(other, 1) == [prof.seed + 7]
    with pytest.raises(ValueError, match="at least one chain"):
        grid.chain_seeds(prof, 0)
    with pytest.raises(ValueError, match="chains=0 must be >= 1"):
        prof.replace(chains=0)


def test_evaluation_uses_the_paper_test_scales_of_the_entry(monkeypatch):

    prof = get_profile("ci")
    calls = []
    monkeypatch.setattr(grid, "checkpoint", lambda p, name, seed=None: f"{name}@{seed}")
    monkeypatch.setattr(
        grid, "evaluate_cached", lambda ckpt, p, protocol: calls.append((ckpt, protocol.name, list(protocol.scales)))
    )
    grid.evaluation(prof, "D/256", "centre")
    grid.evaluation(prof, "D/jit", "both", multi=True, seed=3)
    grid.evaluation(prof, "D/384", "dense", Q=64)
    # section 4.1: Q = S (paper 256 -> 37 px at ci); 4.2: Q = {256, 384, 512} for jittered S
    assert calls == [
        ("D/256@None", "centre", [prof.S(256)]),
        ("D/jit@3", "both", [prof.S(256), prof.S(384), prof.S(512)]),
        ("D/384@None", "dense", [64]),
    ]


def test_the_papers_tables_map_onto_grid_nets_row_for_row():

    for table, nets in (("table3_single_scale", grid.TABLE3), ("table4_multi_scale", grid.TABLE4)):
        rows = [(r["config"], r["train_S"]) for r in paper.table(table)]
        assert [(grid.entry(n).config, grid.entry(n).train_S) for n in nets] == list(dict.fromkeys(rows))
    assert grid.TABLE3[:3] == ("A/256", "A-LRN/256", "B/256") and grid.TABLE3[-1] == "E/jit"
    assert grid.TABLE4 == grid.TABLE3[2:]  # Table 4 starts at B: A and A-LRN are not in it
    assert all(grid.entry(n).trainable == "all" for n in grid.TABLE3)  # never the FC-only D
