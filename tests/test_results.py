"""The results page's gathering of claims tables, on hand-written run and results folders."""

import json
import math

import pytest
from scipy import stats

from vggrepro.core import runs
from vggrepro.experiments import claims, results, verdict_counts
from vggrepro.experiments.claims import FAILS, HOLDS, UNDECIDED


def row(claim, paper, ours, verdict, chains=3):
    """A measured claim's row as a chapter saves it (only the fields the page reads)."""
    return dict(claim=claim, paper=paper, ours=ours, verdict=verdict, kind="lower", role="paper", chains=chains)


def write_recorded(folder, notebook, claims):
    """A claims file as a user commits it under results/claims_<profile>/ (written by hand here)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{notebook}.json").write_text(json.dumps({"notebook": notebook, "claims": claims}))


@pytest.fixture
def saved(tmp_path, monkeypatch):
    """ci claims of two notebooks made on this machine; gpu claims of one recorded in results/."""
    monkeypatch.setenv("VGGREPRO_RUNS", str(tmp_path / "runs"))
    runs.save_claims(
        "ci",
        "01_architecture",
        [claims.design_fact("weights", "138 M", "138.4 M", True), row("depth", "7.0", "30.1", UNDECIDED)],
    )
    runs.save_claims("ci", "06_fusion", [row("fusion helps", "6.8", "20.0 vs 22.0", FAILS)])
    write_recorded(
        tmp_path / "results" / "claims_gpu",
        "01_architecture",
        [
            {"claim": "depth", "paper": "7.0", "ours": "12.3", "verdict": HOLDS, "chains": 3},
            {"claim": "only on a GPU", "paper": "1.0", "ours": "2.0", "verdict": FAILS, "chains": 3},
        ],
    )
    return dict(runs=tmp_path / "runs", results=tmp_path / "results")


def test_gather_lines_up_profiles_claim_by_claim(saved):
    rows = results.gather("ci", **saved)
    assert [(r["notebook"], r["claim"]) for r in rows] == [
        ("01_architecture", "weights"),
        ("01_architecture", "depth"),
        ("01_architecture", "only on a GPU"),
        ("06_fusion", "fusion helps"),
    ]
    weights, depth, gpu_only, fusion = rows
    # A verdict column for ci (the page's profile) and gpu (it has claims), none for imagenet.
    assert set(depth) == {
        "notebook",
        "claim",
        "kind",
        "role",
        "paper",
        "ci",
        "gpu",
        "imagenet",
        "verdict (ci)",
        "verdict (gpu)",
        "chains (ci)",
        "chains (gpu)",
    }
    assert (weights["kind"], depth["kind"]) == ("design", "lower")
    assert (depth["paper"], depth["ci"], depth["gpu"], depth["imagenet"]) == (
        "7.0",
        "30.1",
        "12.3",
        results.NOT_RECORDED,
    )
    assert (depth["verdict (ci)"], depth["verdict (gpu)"]) == (UNDECIDED, HOLDS)
    # gpu recorded 01 without this claim ("-"); it did not record 06 at all.
    assert (weights["gpu"], weights["verdict (gpu)"]) == (results.ABSENT, results.ABSENT)
    assert (fusion["gpu"], fusion["verdict (gpu)"]) == (results.NOT_RECORDED, results.NOT_RECORDED)
    assert (gpu_only["ci"], gpu_only["gpu"], gpu_only["paper"]) == (results.ABSENT, "2.0", "1.0")


def test_summary_counts_the_papers_claims_sanity_checks_and_design_facts_apart(saved):
    runs.save_claims("ci", "07_localisation", [dict(row("the nets learn", "-", "x", HOLDS, chains=1), role="sanity")])
    rows = results.gather("ci", **saved)
    counts = {r["notebook"]: r for r in verdict_counts.summary(rows, "ci")}
    design, sanity = "design facts that hold", "sanity checks that hold"
    assert counts["01_architecture"] == {
        "notebook": "01_architecture",
        HOLDS: 0,
        FAILS: 0,
        UNDECIDED: 1,
        "not run": 1,
        "claims": 2,
        "chains": "3",
        sanity: "0 of 0",
        design: "1 of 1",
    }
    assert counts["07_localisation"][sanity] == "1 of 1" and counts["07_localisation"]["claims"] == 0
    assert counts["all"] == {
        "notebook": "all",
        HOLDS: 0,
        FAILS: 1,
        UNDECIDED: 1,
        "not run": 1,
        "claims": 3,
        "chains": "3",
        sanity: "1 of 1",
        design: "1 of 1",
    }
    gpu = {r["notebook"]: r for r in verdict_counts.summary(rows, "gpu")}
    assert (gpu["all"][HOLDS], gpu["all"][FAILS], gpu["all"]["not run"], gpu["all"][design]) == (1, 1, 1, "0 of 1")


def test_this_machine_replaces_a_recorded_table(saved):
    runs.save_claims("gpu", "01_architecture", [row("depth", "7.0", "11.0", HOLDS)])
    [depth] = [r for r in results.gather("ci", **saved) if r["claim"] == "depth"]
    assert depth["gpu"] == "11.0"


def test_missing_notebooks_and_the_command_that_runs_them(saved):
    book = ["01_architecture", "02_training", "05_multi_scale", "06_fusion"]
    assert results.missing(book, "ci", **saved) == ["02_training", "05_multi_scale"]
    assert results.missing(book, "imagenet", **saved) == book
    assert results.run_command(["02_training", "05_multi_scale"]) == "vggrepro book run --only 02,05"
    assert results.run_command(["06_fusion"], "gpu") == "vggrepro book run --profile gpu --only 06"


def test_nothing_saved_yet_gives_empty_tables(tmp_path):
    empty = dict(runs=tmp_path / "runs", results=tmp_path / "results")
    assert results.gather("ci", **empty) == []
    assert verdict_counts.summary([], "ci") == [
        {
            "notebook": "all",
            HOLDS: 0,
            FAILS: 0,
            UNDECIDED: 0,
            "not run": 0,
            "claims": 0,
            "chains": "-",
            "sanity checks that hold": "0 of 0",
            "design facts that hold": "0 of 0",
        }
    ]


def test_bad_input_names_the_problem(saved, tmp_path):
    with pytest.raises(ValueError, match="unknown profile 'laptop'"):
        results.gather("laptop", **saved)
    (saved["results"] / "claims_gpu" / "02_training.json").write_text("{not json")
    with pytest.raises(ValueError, match="02_training.json is not a claims table"):
        results.gather("ci", **saved)


def test_one_reader_of_recorded_figures(tmp_path):
    root = tmp_path / "results"
    (root / "released").mkdir(parents=True)
    (root / "bench_train_cpu.json").write_text('{"rows": []}')
    (root / "released" / "vgg16.json").write_text(
        '{"settings": {"kind": "eval", "source": "weights"}, "config": "D", "protocol": "both", '
        '"scales": [256, 384, 512], "images": 50000, "top1": 24.4, "top5": 7.2, "provenance": {"device": "H100"}}'
    )
    (root / "released" / "other.json").write_text('{"settings": {"kind": "train"}}')
    assert [p.name for p, _ in results.recorded("bench_train_*.json", root=root)] == ["bench_train_cpu.json"]
    assert results.released_evaluations(root=root) == [
        {
            "run": "vgg16",
            "net": "D",
            "protocol": "both",
            "Q": "256,384,512",
            "images": 50000,
            "top1_err": 24.4,
            "top5_err": 7.2,
            "device": "H100",
        }
    ]
    (root / "released" / "torn.json").write_text('{"settings": ')
    with pytest.raises(ValueError, match="torn.json is not a readable record"):
        results.released_evaluations(root=root)


def test_the_cpu_column_appears_once_the_cpu_scale_has_claims(saved):
    """The two-hour evidence scale gets a column when it has run (here, or committed under results/),
    or on its own page; until then ci's page keeps its columns (its stored outputs)."""
    assert "cpu" not in results.gather("ci", **saved)[0]
    assert results.shown_profiles("ci", **saved) == ("ci", "gpu", "imagenet")
    on_its_page = results.gather("cpu", **saved)[0]
    assert (on_its_page["cpu"], on_its_page["verdict (cpu)"]) == (results.NOT_RECORDED, results.NOT_RECORDED)
    write_recorded(
        saved["results"] / "claims_cpu",
        "01_architecture",
        [{"claim": "depth", "paper": "7.0", "ours": "20.5", "verdict": HOLDS, "chains": 6}],
    )
    depth = next(r for r in results.gather("ci", **saved) if r["claim"] == "depth")
    assert (depth["cpu"], depth["verdict (cpu)"]) == ("20.5", HOLDS)
    assert results.shown_profiles("ci", **saved) == ("ci", "cpu", "gpu", "imagenet")


def test_the_matrix_has_one_short_row_per_claim_and_a_dash_where_no_run_is(saved):
    runs.save_claims(
        "ci",
        "04_single_scale",
        [
            dict(
                row("Error falls with depth: D beats A", "27.0 vs 29.6", "47.0 vs 56.7: -9.7 [-16.9, -2.6]", HOLDS),
                effect=-9.73,
                low=-16.9,
                high=-2.6,
            )
        ],
    )
    matrix = results.matrix("ci", **saved)
    assert [list(r) for r in matrix][0] == ["#", "claim", "ci", "gpu", "imagenet"]  # the page's own profile first
    by_id = {r["#"]: r for r in matrix}
    assert list(by_id) == ["1.1", "1.2", "1.3", "4.1", "6.1"]
    assert by_id["1.1"] == {"#": "1.1", "claim": "weights", "ci": "holds (exact)", "gpu": "-", "imagenet": "-"}
    # no effect recorded: the verdict and the chains it rests on alone
    assert (by_id["1.2"]["ci"], by_id["1.2"]["gpu"]) == ("undecided (3 chains)", "holds (3 chains)")
    assert by_id["4.1"]["ci"] == "holds (3 chains), -9.7 [-16.9, -2.6]"
    assert (by_id["4.1"]["gpu"], by_id["6.1"]["gpu"], by_id["6.1"]["ci"]) == ("-", "-", "does not hold (3 chains)")
    # the details: the whole claim, the paper's number and each run's as its chapter states it
    [depth] = [r for r in results.details("ci", **saved) if r["#"] == "4.1"]
    # the paper's number and the page's profile side by side (tests/test_book.py reads them so)
    assert list(depth) == ["#", "claim", "paper", "ci", "gpu", "imagenet", "paper's way"]
    assert depth == {
        "#": "4.1",
        "claim": "Error falls with depth: D beats A",
        "paper": "27.0 vs 29.6",
        "paper's way": "< 0",
        "ci": "47.0 vs 56.7: -9.7 [-16.9, -2.6]",
        "gpu": "-",
        "imagenet": "-",
    }
    # the page says once which runs exist
    chapters = ["01_architecture", "04_single_scale", "06_fusion", "08_generalisation"]
    assert results.runs_note(chapters, "ci", **saved) == (
        "Runs shown: `ci` (3 of 4 chapters), `gpu` (1 of 4 chapters). Not run yet: `imagenet`; its column shows a dash."
    )


def test_a_cpu_column_joins_the_matrix_once_recorded(saved):
    assert "cpu" not in results.matrix("ci", **saved)[0]
    write_recorded(
        saved["results"] / "claims_cpu",
        "01_architecture",
        [
            {
                "claim": "depth",
                "paper": "7.0",
                "ours": "20.5 vs 30.1: -9.6 [-12.0, -7.2]",
                "verdict": HOLDS,
                "kind": "lower",
                "chains": 6,
                "effect": -9.6,
                "low": -12.0,
                "high": -7.2,
            }
        ],
    )
    depth = next(r for r in results.matrix("ci", **saved) if r["claim"] == "depth")
    assert list(depth) == ["#", "claim", "ci", "cpu", "gpu", "imagenet"]
    assert depth["cpu"] == "holds (6 chains), -9.6 [-12.0, -7.2]"
    assert "`cpu` (1 of 1 chapters)" in results.runs_note(["01_architecture"], "ci", **saved)


def test_the_matrix_shows_whole_labels_and_effects_as_the_chapter_printed_them(tmp_path, monkeypatch):
    monkeypatch.setenv("VGGREPRO_RUNS", str(tmp_path / "runs"))
    where = dict(runs=tmp_path / "runs", results=tmp_path / "results")
    stem = "Fusing the jittered D and E beats the better of the two, evaluated"
    runs.save_claims(
        "ci",
        "06_fusion",
        [
            dict(
                row(f"{stem}: dense", "24.0", "71.2 vs 67.8: +3.4 [-8.3, +14.8]", UNDECIDED),
                effect=3.4,
                low=-8.3,
                high=14.75,
            ),
            dict(
                row(f"{stem}: multi-crop", "23.9", "no interval printed", UNDECIDED), effect=-1.6, low=-13.0, high=9.76
            ),
        ],
    )
    dense, crop = results.matrix("ci", **where)
    assert (dense["claim"], crop["claim"]) == (f"{stem}: dense", f"{stem}: multi-crop")
    assert (dense["ci"], crop["ci"]) == ("undecided (3 chains), +3.4 [-8.3, +14.8]", "undecided (3 chains), -1.6")


def test_the_matrix_as_html_keeps_each_effect_whole():
    rows = [
        {"#": "4.3", "claim": "D beats A <ours>", "ci": "holds, -9.7 [-16.9, -2.6]", "gpu": "-"},
        {"#": "1.1", "claim": "weights", "ci": "holds (exact)", "gpu": "does not hold, +1.0 [+0.2, +1.8]"},
    ]
    page = results.matrix_html(rows)
    assert page.startswith('<table class="claims-matrix dataframe"><thead><tr><th>#</th><th>claim</th><th>ci</th>')
    assert (
        '<td><span class="label">D beats A &lt;ours&gt;</span></td><td><span class="verdict holds">holds</span>'
        '<span class="effect"> -9.7 [-16.9, -2.6]</span></td><td>-</td>'
    ) in page
    assert '<td><span class="verdict holds">holds (exact)</span></td>' in page
    assert '<span class="verdict fails">does not hold</span><span class="effect"> +1.0 [+0.2, +1.8]</span>' in page
    assert results.matrix_html([]) == ""
    one = results.matrix_html([{"#": "4.1", "claim": "c", "ci": "undecided (1 chain), +2.0 [no interval: 1 chain]"}])
    assert '<span class="effect" title="no interval: 1 chain"> +2.0</span>' in one


def test_only_chapters_that_save_claims_are_waited_for(tmp_path):
    (tmp_path / "04_single_scale.ipynb").write_text('{"cells": [{"source": "runs.save_claims(prof.name, ...)"}]}')
    (tmp_path / "09_results.ipynb").write_text('{"cells": [{"source": "results.gather(prof.name)"}]}')
    (tmp_path / "10_appendix_reference.ipynb").write_text('{"cells": []}')
    assert results.claiming(sorted(tmp_path.glob("*.ipynb"))) == ["04_single_scale"]


def test_what_a_larger_scale_decides_groups_the_claims_both_runs_made(tmp_path):
    def table(profile, verdicts):
        rows = [
            {
                "claim": f"claim {k}",
                "paper": "p",
                "ours": "1.0 vs 2.0: -1.0 [-2.0, -0.1]",
                "verdict": v,
                "kind": "lower",
                "chains": 3,
            }
            for k, v in verdicts.items()
        ]
        rows.append({"claim": "a design fact", "paper": "p", "ours": "x", "verdict": HOLDS, "kind": "design"})
        folder = tmp_path / "results" / f"claims_{profile}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "04_single_scale.json").write_text(json.dumps({"notebook": "04_single_scale", "claims": rows}))

    table("ci", {"a": UNDECIDED, "b": HOLDS, "c": HOLDS, "d": FAILS, "e": UNDECIDED})
    table("cpu", {"a": HOLDS, "b": UNDECIDED, "c": HOLDS, "d": HOLDS, "e": UNDECIDED, "f": HOLDS})
    groups = verdict_counts.what_scale_decides("cpu", "ci", runs=tmp_path / "runs", results=tmp_path / "results")
    claims_in = {k: [r["claim"] for r in rows] for k, rows in groups.items()}
    # "f" only the cpu run made, and the design fact is checked exactly at any scale: neither is compared
    assert claims_in == {
        "decided_here_only": ["claim a"],
        "lost_here": ["claim b"],
        "agree": ["claim c"],
        "disagree": ["claim d"],
        "undecided_at_both": ["claim e"],
    }
    assert groups["decided_here_only"][0]["cpu"].startswith("holds") and groups["disagree"][0]["ci"].startswith(
        "does not"
    )


def test_a_table_decided_before_chains_is_withdrawn_and_said_so(saved):
    write_recorded(
        saved["results"] / "claims_cpu",
        "04_single_scale",
        [{"claim": "depth", "paper": "7.0", "ours": "-8.0 [-13.5, -2.5]", "verdict": HOLDS, "kind": "lower"}],
    )
    assert results.withdrawn("cpu", **saved) == ["04_single_scale"]
    assert results.profile_claims("cpu", **saved) == {}
    assert "cpu" not in results.shown_profiles("ci", **saved)


def test_the_papers_claims_of_a_scale_are_held_to_holm(saved):
    """Three tested claims at p = 0.01, 0.03 and 0.04: alone all three hold; Holm keeps the first
    (0.03 < 0.05), then stops at the second (0.03 x 2 = 0.06). A sanity check is not in the family."""
    tested = [dict(row(f"claim {k}", "-", "x", HOLDS), p=p) for k, p in enumerate((0.01, 0.03, 0.04))] + [
        dict(row("the nets learn", "-", "x", HOLDS, chains=1), role="sanity", p=0.001)
    ]
    runs.save_claims("ci", "05_multi_scale", tested)
    table = results.profile_claims("ci", **saved)["05_multi_scale"]
    assert [r["verdict"] for r in table] == [HOLDS, UNDECIDED, UNDECIDED, HOLDS]
    assert [r["verdict_alone"] for r in table] == [HOLDS] * 4
    assert table[1]["reason"] == "Holm" and "not after Holm over 3 claims" in table[1]["why"]
    assert verdict_counts.family_size("ci", **saved) == 3
    cells = {r["claim"]: r["ci"] for r in results.matrix("ci", **saved)}
    assert cells["claim 1"] == "undecided (Holm; 3 chains)"
    assert cells["the nets learn"] == "holds (sanity check; 1 chain)"


def test_each_matrix_id_links_to_its_row_in_its_chapter():
    rows = [
        {"#": "4.3", "claim": "D beats C", "ci": "holds, -9.7 [-16.9, -2.6]"},
        {"#": "9.1", "claim": "not a chapter of the book", "ci": "-"},
    ]
    page = results.matrix_html(rows, chapters=["01_architecture", "04_single_scale"])
    assert '<td><a href="04_single_scale.html#claim-4-3">4.3</a></td>' in page
    assert "<td>9.1</td>" in page  # no chapter of that number: no link
    assert claims.anchor("4.12") == "claim-4-12"
    assert results.claim_ids is claims.claim_ids  # the chapters' tables and the page number alike


def test_every_reason_a_cell_shows_has_its_one_line_note():
    rows = [
        {"#": "1.1", "claim": "weights", "ci": "holds (exact)", "gpu": "-"},
        {"#": "4.1", "claim": "B", "ci": "undecided (dense worse than centre crop; 1 chain), -15.6", "gpu": "-"},
        {"#": "4.2", "claim": "C beats B", "ci": "undecided (Holm; 3 chains), -2.0 [-4.0, -0.1]", "gpu": "-"},
    ]
    notes = results.reasons_note(rows)
    assert [n.split("*")[1] for n in notes] == ["exact", "chain", "dense worse than centre crop", "Holm"]
    assert all(len(n.splitlines()) == 1 for n in notes)
    # every short reason claims.short_reason can write has a note
    for reason in ("failed run", "dense worse than centre crop", "margin not testable", "interval spans the boundary"):
        assert reason in results.REASONS


def test_the_counts_cover_every_scale_that_has_claims(saved):
    counts = verdict_counts.counts_by_scale("ci", **saved)
    assert [c["scale"] for c in counts] == ["ci", "gpu", "imagenet"]
    ci, gpu, imagenet = counts
    assert (ci["holds"], ci["does not hold"], ci["undecided at this scale"]) == (0, 1, 1)
    assert (gpu["holds"], gpu["does not hold"]) == (1, 1)
    # a scale not run yet: every claim not run, said rather than left out
    assert (imagenet["holds"], imagenet["not run"], imagenet["claims"]) == (0, imagenet["claims"], 3)


def test_a_no_better_row_saved_before_the_turn_reads_the_papers_way():
    old = dict(
        row("LRN does not help", "-", "58.8 vs 75.0: -16.2 [-20.0, -12.4] (margin 1)", FAILS),
        kind="no-better",
        margin=1.0,
        effect=-16.2,
        low=-20.0,
        high=-12.4,
    )
    assert results.cell(old) == "does not hold (3 chains), +16.2 [+12.4, +20.0]"
    assert claims.paper_way(old) == "< +1"
    assert claims.effect_of(dict(old, a="A-LRN", b="A")) == "err(A) - err(A-LRN)"


def test_what_it_would_take_to_decide_a_claim():
    row = dict(kind="lower", effect=-1.0, chains=1, images=2400, image_se=1.0, chain_sd=None)
    assert verdict_counts.chains_to_decide(row).startswith("none: the images alone leave +/-2.0")
    assert verdict_counts.chains_to_decide(dict(row, effect=-10.0)) == "unknown until 3 chains measure the seed term"
    # by hand: the fewest k >= 3 whose t interval (Welch-Satterthwaite) is narrower than 5 points
    n, sd = 2400, 4.0
    for k in range(3, 100):
        chain, image = sd**2 / k, 1.0
        dof = (chain + image) ** 2 / (chain**2 / (k - 1) + image**2 / (n - 1))
        if stats.t.ppf(0.975, dof) * math.sqrt(chain + image) < 5.0:
            break
    measured = dict(row, effect=-5.0, chains=3, chain_sd=sd, low=-9.0, high=-1.0)
    assert verdict_counts.chains_to_decide(measured) == f"about {k} chains"
    equal = dict(row, kind="equal", margin=1.0, effect=0.2, image_se=0.1)  # 0.8 from the margin
    assert verdict_counts.distance_to_boundary(equal) == 0.8
