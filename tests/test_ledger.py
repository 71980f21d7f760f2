"""The evidence ledger: chains recorded one at a time, never overwritten, pooled into one verdict."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace

import numpy as np
import pytest

from vggrepro.book.runner import variant_name
from vggrepro.core.profiles import get_profile
from vggrepro.core.runs import REPO, claims_folder
from vggrepro.experiments import chapter_claims, evidence, grid, ledger, results, verdict_counts
from vggrepro.experiments import claims as C
from vggrepro.experiments.chains import chain_effect

spec = importlib.util.spec_from_file_location("record_run", REPO / "scripts" / "record_run.py")
record_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(record_run)

IMAGES = 400


def chain_arms(seed: int) -> dict[str, C.Arm]:
    """One chain's arms: D wrong on about 20% of the images, A on about 30%, a dense D on 18%."""
    rng = np.random.default_rng(100 + seed)
    p = {"D centre": 0.2, "A centre": 0.3, "D dense": 0.18}
    return {label: C.Arm(label, (rng.random(IMAGES) < q).astype(int), (seed,)) for label, q in p.items()}


def claim() -> C.Claim:
    guards = [C.Guard("D dense", 95.0), C.reaches_centre_crop("D dense", "D centre")]
    return C.Claim("D beats A", "D dense", "A centre", notebook="04_single_scale", guards=guards)


def tables(seed: int) -> dict[str, list[dict]]:
    fact = C.design_fact("D has 16 layers", "16", "16", True, notebook="04_single_scale")
    return {"04_single_scale": [claim().decide(chain_arms(seed)), fact]}


def record(seed: int, epochs: int = 50) -> dict:
    profile = get_profile("cpu", epochs=epochs)
    return {
        "profile": "cpu",
        "seed": seed,
        "design": ledger.design(profile, "digest", {"depth_chains": 1, "first_chain": seed}),
        "claims": tables(seed),
    }


def test_packed_errors_come_back_exactly():
    bits = np.random.default_rng(0).integers(0, 2, 2401).astype(float)
    assert np.array_equal(evidence.unpack(evidence.pack(bits)), bits)
    assert len(evidence.pack(bits)["bits"]) < 450  # one bit an image, in base64
    means = np.array([0.0, 1 / 3, 2 / 3, 1.0])  # a chain's mean over three SVM splits
    assert np.allclose(evidence.unpack(evidence.pack(means)), means, atol=1e-9)
    with pytest.raises(ValueError, match="torn"):
        evidence.unpack({"images": 9000, "bits": evidence.pack(bits)["bits"]})


def test_a_decided_row_carries_the_claim_and_its_arms():
    row = claim().decide(chain_arms(3))
    ev = row["evidence"]
    assert set(ev["arms"]) == {"D dense", "A centre", "D centre"}  # the guard's arm too
    assert evidence.chains_of(ev["arms"]) == {3}
    again = C.Claim.of(json.loads(json.dumps(ev["claim"])))
    assert again == claim()


def test_no_better_claims_come_back_without_a_second_swap():
    c = C.Claim("LRN does not help", "A-LRN", "A", kind="no-better", margin=1.0)
    assert C.Claim.of(c.declared()) == c and (c.a, c.kind) == ("A", "no-worse")


def test_pooled_chains_give_the_verdict_of_all_arms_at_once(tmp_path):
    for seed in (0, 1, 2):
        ledger.append(record(seed), root=tmp_path)
    pooled = ledger.pooled("cpu", root=tmp_path)["04_single_scale"]
    row, fact = pooled
    assert row["chains"] == 3 and row["ledger_chains"] == [0, 1, 2]
    # independent of the ledger: the mean over chains of each chain's paired difference
    arms = [chain_arms(s) for s in (0, 1, 2)]
    x = np.stack([100.0 * (a["D dense"].errors[0] - a["A centre"].errors[0]) for a in arms])
    expected = chain_effect(x)
    assert row["effect"] == round(expected.difference, 2) and row["low"] == round(expected.low, 2)
    assert row["verdict"] == C.HOLDS and fact["verdict"] == C.HOLDS and "evidence" not in fact


def test_the_results_page_recomputes_a_verdict_from_the_ledger_alone(tmp_path):
    for seed in (0, 1, 2):
        ledger.append(record(seed), root=tmp_path)
    empty_runs = tmp_path / "runs"
    page = results.profile_claims("cpu", runs=empty_runs, results=tmp_path)
    row = page["04_single_scale"][0]
    assert row["chains"] == 3 and row["verdict"] == C.HOLDS and row["p_holm"] < 0.05


def test_one_chain_alone_stays_undecided_and_a_local_chain_pools_with_the_ledger(tmp_path):
    ledger.append(record(0), root=tmp_path)
    alone = ledger.pooled("cpu", root=tmp_path)["04_single_scale"][0]
    assert alone["chains"] == 1 and alone["verdict"] == C.UNDECIDED
    both = ledger.pooled("cpu", tables(1), root=tmp_path)["04_single_scale"][0]
    assert both["ledger_chains"] == [0, 1]
    same = ledger.pooled("cpu", tables(0), root=tmp_path)["04_single_scale"][0]
    assert same["ledger_chains"] == [0]  # the recorded chain is not counted twice


def test_a_chain_is_never_overwritten_and_another_design_is_refused(tmp_path):
    path = ledger.append(record(0), root=tmp_path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"chain 0 is in the ledger already.*first_chain=1"):
        ledger.append(record(0), root=tmp_path)
    with pytest.raises(ValueError, match=r"another design than chain 0: knobs.epochs is 40 here and 50"):
        ledger.append(record(1, epochs=40), root=tmp_path)
    assert path.read_bytes() == before and sorted(p.name for p in path.parent.iterdir()) == ["chain-0.json"]
    (path.parent / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not a chain"):
        ledger.append(record(1), root=tmp_path)


def test_a_run_of_several_chains_is_refused():
    two = {
        "04": [claim().decide({k: C.Arm(k, np.vstack([a.errors[0]] * 2), (0, 1)) for k, a in chain_arms(0).items()})]
    }
    with pytest.raises(ValueError, match=r"chains \[0, 1\]; record one chain a run"):
        ledger.chain_seed(two)


def test_record_run_appends_the_chain_with_its_design_nets_and_times(tmp_path, monkeypatch):
    runs, data = tmp_path / "runs", tmp_path / "data"
    monkeypatch.setenv("VGGREPRO_RUNS", str(runs))
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"digest": "abc123", "files": {}}))
    parameters = {"data_root": str(data), "depth_chains": "1", "first_chain": "1"}
    folder = claims_folder("cpu", variant=variant_name(parameters))
    folder.mkdir(parents=True)
    (folder / "04_single_scale.json").write_text(json.dumps({"claims": tables(1)["04_single_scale"]}))
    log = tmp_path / "book.log"
    log.write_text("[4/10] book/04_single_scale.ipynb (profile='cpu') ... ok in 1800.5 s -> x\n")
    monkeypatch.setattr(record_run, "results_root", lambda: tmp_path / "results")
    argv = ["--profile", "cpu", "--log", str(log)] + [f"-p{k}={v}" for k, v in parameters.items()]
    assert record_run.main(argv) == 0
    (chain,) = ledger.load("cpu", root=tmp_path / "results")
    assert (chain["seed"], chain["book_seconds"], chain["design"]["data_digest"]) == (1, 1800.5, "abc123")
    assert chain["design"]["book_parameters"] == {"depth_chains": "1"}
    with pytest.raises(SystemExit, match="chain 1 is in the ledger already"):
        record_run.main(argv)


def test_map_claims_pool_their_svm_scores_chain_by_chain(tmp_path):
    rng = np.random.default_rng(5)
    labels = (rng.random((60, 4)) < 0.3).astype(int)

    def scores(skill):  # two SVM splits of scores that rank positives higher the more skilled
        return np.stack([labels * skill + rng.normal(size=labels.shape) for _ in range(2)])

    c = chapter_claims.Chapter("08_generalisation", 80.0, "a chance scorer").claim("deep beats shallow", "D", "A", "x")
    runs = {"D": [scores(1.5) for _ in range(3)], "A": [scores(0.5) for _ in range(3)]}
    direct = chapter_claims.decide_map(c, runs, labels, (0, 1, 2))
    for seed in range(3):
        one = chapter_claims.decide_map(c, {k: [v[seed]] for k, v in runs.items()}, labels, (seed,))
        rec = dict(record(seed), claims={"08_generalisation": [one]})
        ledger.append(rec, root=tmp_path)
    (row,) = ledger.pooled("cpu", root=tmp_path)["08_generalisation"]
    keys = ("effect", "low", "high", "chains", "verdict", "err_a", "err_b")
    assert [row[k] for k in keys] == [direct[k] for k in keys] and row["ledger_chains"] == [0, 1, 2]


def test_a_chapter_shows_its_own_rows_without_a_ledger_and_pooled_with_one(tmp_path):
    mine = tables(1)["04_single_scale"]
    assert ledger.pooled_with("cpu", "04_single_scale", mine, root=tmp_path) is mine
    ledger.append(record(0), root=tmp_path)
    shown = ledger.pooled_with("cpu", "04_single_scale", mine, root=tmp_path)
    assert shown[0]["ledger_chains"] == [0, 1] and shown[1]["kind"] == "design"


def test_the_page_lists_each_recorded_chain_with_its_machine_and_time(tmp_path):
    made = {"processor": "AMD EPYC", "device": "CPU x86_64 x2 (2 threads)", "commit": "0123456789ab"}
    ledger.append(dict(record(0), provenance=made, book_seconds=6000.0, nets=[{}] * 21), root=tmp_path)
    (row,) = ledger.chains_table("cpu", root=tmp_path)
    assert (row["chain"], row["processor"], row["recorded at commit"], row["book minutes"], row["nets trained"]) == (
        0,
        "AMD EPYC",
        "012345678",
        100.0,
        21,
    )


def test_a_chain_recorded_on_another_processor_pools_with_the_others(tmp_path):
    # the processor is provenance, not design: chains are seeded replications wherever they ran
    amd = {"processor": "AMD EPYC 7B13", "device": "CPU x86_64 x2 (2 threads)"}
    intel = {"processor": "Intel(R) Xeon(R) Platinum 8481C", "device": "CPU x86_64 x2 (2 threads)"}
    ledger.append(dict(record(0), provenance=amd), root=tmp_path)
    ledger.append(dict(record(1), provenance=intel), root=tmp_path)
    ledger.append(dict(record(2), provenance=amd), root=tmp_path)
    assert ledger.pooled("cpu", root=tmp_path)["04_single_scale"][0]["ledger_chains"] == [0, 1, 2]
    assert [r["processor"] for r in ledger.chains_table("cpu", root=tmp_path)] == [
        amd["processor"],
        intel["processor"],
        amd["processor"],
    ]


def test_a_chain_of_another_grid_is_another_design(monkeypatch):
    before = ledger.grid_digest()
    changed = dict(ledger.grid.GRID)
    changed["A/256-budget"] = replace(changed["A/256-budget"], budget=3)
    monkeypatch.setattr(ledger.grid, "GRID", changed)
    assert ledger.grid_digest() != before
    assert "grid is" in ledger.difference({"grid": ledger.grid_digest()}, {"grid": before})


def test_the_committed_ledgers_effects_are_the_mean_paired_differences_of_its_arms():
    """Every pooled cpu claim on the page, recomputed from results/ledger/cpu alone with numpy: the
    effect is the mean over chains and images of arm a's errors minus arm b's."""
    chains = ledger.load("cpu")
    if not chains:
        pytest.skip("no cpu chain is recorded yet")
    page = results.profile_claims("cpu", runs=REPO / "no-runs-here")
    checked = 0
    for notebook, rows in page.items():
        for row in rows:
            mine = [
                next((r for r in c["claims"].get(notebook, []) if r["claim"] == row["claim"]), None) for c in chains
            ]
            mine = [r for r in mine if r and r.get("evidence") and not r["evidence"].get("metric")]
            if not mine or not mine[0]["evidence"]["claim"].get("over_chains", True):
                continue
            a, b = mine[-1]["evidence"]["claim"]["a"], mine[-1]["evidence"]["claim"]["b"]
            diffs = [
                evidence.unpack(r["evidence"]["arms"][a]["errors"][0])
                - evidence.unpack(r["evidence"]["arms"][b]["errors"][0])
                for r in mine
            ]
            assert row["effect"] == pytest.approx(100 * np.mean(diffs), abs=0.006), row["claim"]
            assert row["chains"] == len(mine)
            checked += 1
    assert checked > 10


def test_the_verdict_history_pools_the_first_k_chains_by_seed(tmp_path):
    for seed in (0, 1, 2, 3):
        ledger.append(record(seed), root=tmp_path)
    rows = verdict_counts.history("cpu", [1, 3, 9], results=tmp_path)
    assert [r["#"] for r in rows] == ["4.1"]  # the design fact (4.2) is left out
    row = rows[0]
    assert list(row) == ["#", "claim", "chain 0", "chain 1", "chain 2", "chain 3", "after 1", "after 3"]
    assert row["after 1"] == row["chain 0"] and row["chain 3"].startswith("undecided (1 chain)")
    # after 3: chains 0-2 and not 3, decided as the ledger decides those three alone
    three = ledger.pool([tables(s) for s in (0, 1, 2)])["04_single_scale"][0]
    assert three["ledger_chains"] == [0, 1, 2]
    assert row["after 3"] == results.cell(results.controlled({"04_single_scale": [three]})["04_single_scale"][0])
    assert row["after 3"].startswith("holds (3 chains)")
    assert verdict_counts.history("cpu", [2], results=tmp_path / "none") == []


def test_a_claim_decided_against_the_paper_shows_its_measured_mechanism(tmp_path):
    def against(seed: int) -> dict:  # A right where the paper has D better: "D beats A" fails
        rng = np.random.default_rng(200 + seed)
        arms = {
            label: C.Arm(label, (rng.random(IMAGES) < q).astype(int), (seed,)) for label, q in (("D", 0.4), ("A", 0.2))
        }
        row = C.Claim("D beats A", "D", "A", notebook="04_single_scale").decide(arms)
        return dict(record(seed), claims={"04_single_scale": [row]})

    for seed in (0, 1, 2):
        ledger.append(against(seed), root=tmp_path)
    (row,) = verdict_counts.against_the_paper("cpu", runs=tmp_path / "runs", results=tmp_path)
    assert row["#"] == "4.1" and row["cpu"].startswith("does not hold (3 chains)")
    assert row["measured mechanism"].startswith("not measured yet")
    figures = {"claim": "D beats A", "summary": "A saw the whole object."}
    results.save_figures("cpu", "x_mechanism-2", "why?", figures, out=tmp_path / "cpu_x_mechanism-2.json")
    (row,) = verdict_counts.against_the_paper("cpu", runs=tmp_path / "runs", results=tmp_path)
    assert row["measured mechanism"] == "A saw the whole object. (cpu_x_mechanism-2.json)"


def test_a_claim_stopped_by_a_dense_arm_worse_than_its_centre_crop_shows_its_mechanism_too(tmp_path):
    def stopped(seed: int) -> dict:  # dense worse than its centre crop: "dense beats centre" undecided
        rng = np.random.default_rng(300 + seed)
        arms = {
            label: C.Arm(label, (rng.random(IMAGES) < q).astype(int), (seed,))
            for label, q in (("dense", 0.5), ("centre", 0.3))
        }
        guard = C.reaches_centre_crop("dense", "centre")
        row = C.Claim("dense beats centre", "dense", "centre", notebook="07_localisation", guards=[guard]).decide(arms)
        return dict(record(seed), claims={"07_localisation": [row]})

    for seed in (0, 1, 2):
        ledger.append(stopped(seed), root=tmp_path)
    (row,) = verdict_counts.against_the_paper("cpu", runs=tmp_path / "runs", results=tmp_path)
    assert row["#"] == "7.1" and row["cpu"].startswith("undecided (dense worse than centre crop; 3 chains)")
    assert row["measured mechanism"].startswith("not measured yet")


def test_a_chains_recorded_errors_are_its_arms_means(tmp_path):
    for seed in (0, 1):
        ledger.append(record(seed), root=tmp_path)
    got = ledger.recorded_errors("cpu", "04_single_scale", "D beats A", 1, root=tmp_path)
    want = {label: round(100 * float(arm.errors[0].mean()), 2) for label, arm in chain_arms(1).items()}
    assert got == want
    assert ledger.recorded_errors("cpu", "04_single_scale", "D beats A", 9, root=tmp_path) is None
    assert ledger.recorded_errors("cpu", "04_single_scale", "A beats D", 1, root=tmp_path) is None


def test_the_nets_table_finds_each_chains_nets_by_their_run_keys(tmp_path):
    profile = get_profile("cpu")
    for seed, err, cuts in ((0, 27.04, 1), (1, 37.33, 3)):
        a = {"run": grid.run_of(profile, "A/256", seed).id, "top1_err": err, "lr_cuts": cuts, "epochs": 50}
        ledger.append(dict(record(seed), nets=[a]), root=tmp_path)
    rows = {r["net"]: r for r in ledger.nets_table("cpu", root=tmp_path)}
    assert set(rows) == set(grid.GRID)
    assert rows["A/256"] == {
        "net": "A/256",
        "chain 0": "27.0 (1 cut, 50 ep)",
        "chain 1": "37.3 (3 cuts, 50 ep)",
        "spread": 10.3,
    }
    assert rows["A/256-budget"]["chain 0"] == "-"  # the same config and scale, another run: not confused
    assert rows["A/256-budget"]["spread"] is None
