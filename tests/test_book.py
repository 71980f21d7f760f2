"""The book as a whole: papermill runs with injected parameters, the Jupyter Book site, and the site
as a real browser renders it (headless Chromium, skipped where it is not installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from vggrepro.book import runner as book
from vggrepro.experiments import paper

ROOT = book.ROOT
#: Every page of the book that is a notebook, by its stem ("01_architecture").
CHAPTERS = [nb.stem for nb in book.notebooks(ROOT)]
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def quiet(*args, **kwargs):
    pass


# -- a toy book, to check the runner against outputs we can predict ------------------------------


def toy_notebook(*cells) -> nbformat.NotebookNode:
    nb = new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def parameters_cell(source: str):
    return new_code_cell(source, metadata={"tags": ["parameters"]})


@pytest.fixture
def toy_book(tmp_path):
    """_toc.yml with an intro page, two notebooks, a Markdown page and a page not written yet."""
    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text(
        yaml.safe_dump(
            {
                "format": "jb-book",
                "root": "intro",
                "parts": [
                    {"caption": "run", "chapters": [{"file": "book/01_square"}, {"file": "book/02_fails"}]},
                    {"caption": "later", "chapters": [{"file": "book/03_notes"}, {"file": "book/09_results"}]},
                ],
            }
        )
    )
    (tmp_path / "intro.md").write_text("# toy\n")
    (tmp_path / "book" / "03_notes.md").write_text("# notes\n")
    square = toy_notebook(
        new_markdown_cell("# squares"),
        parameters_cell('profile = "ci"\nwidth = None\nside = 3'),
        new_code_cell("import os\nprint(profile, width, side * side, os.path.basename(os.getcwd()))"),
    )
    nbformat.write(square, tmp_path / "book" / "01_square.ipynb")
    fails = toy_notebook(parameters_cell('profile = "ci"'), new_code_cell("x = 1"), new_code_cell("1 / 0"))
    nbformat.write(fails, tmp_path / "book" / "02_fails.ipynb")
    return tmp_path


def test_parse_parameters_reads_literals_and_both_spellings():
    got = book.parse_parameters(["width=0.0625", "side", "4", "name=D", "flag=None", "scales=[256, 384]"])
    assert got == {"width": 0.0625, "side": 4, "name": "D", "flag": None, "scales": [256, 384]}
    with pytest.raises(ValueError, match="needs a value"):
        book.parse_parameters(["width"])
    with pytest.raises(ValueError, match="not a Python name"):
        book.parse_parameters(["2x=1"])


def test_notebooks_follow_the_toc_and_skip_pages(toy_book):
    found = book.notebooks(toy_book)
    assert [p.name for p in found] == ["01_square.ipynb", "02_fails.ipynb"]
    assert book.select(found, "02") == found[1:]
    assert book.select(found, ["01_square", "2"]) == found
    with pytest.raises(ValueError, match="01_square, 02_fails"):
        book.select(found, "07")


def test_run_injects_parameters_and_writes_to_the_run_folder(toy_book):
    stored_before = (toy_book / "book" / "01_square.ipynb").read_text()
    out = book.run_book("gpu", only="01", parameters={"width": 0.5, "side": 5}, root=toy_book, echo=quiet)
    assert out == [toy_book / "runs" / "gpu" / "book" / "01_square.ipynb"]
    printed = nbformat.read(out[0], as_version=4).cells[-1].outputs[0]["text"]
    assert printed.split() == ["gpu", "0.5", "25", "book"]  # injected values; cwd is book/
    assert (toy_book / "book" / "01_square.ipynb").read_text() == stored_before  # book/ untouched
    with pytest.raises(ValueError, match="no chosen notebook has a parameter 'sidee'"):
        book.run_book(only="01", parameters={"sidee": 5}, root=toy_book, echo=quiet)
    with pytest.raises(ValueError, match="--inplace"):
        book.run_book("gpu", inplace=True, root=toy_book, echo=quiet)


def test_a_profile_knob_reaches_every_chapter_and_its_claims_are_kept_apart(tmp_path, monkeypatch, capsys):
    """vggrepro book run -p width=0.0625 --only 02: chapter 02 (which declares no width) trains at
    that width; a chapter's own parameter of a knob's name (07's epochs) stays its own; and the
    claims of such a run never land where the results page reads the profile's own."""
    import os

    import papermill

    from vggrepro.cli import main as cli
    from vggrepro.core import runs
    from vggrepro.core.profiles import OVERRIDES_ENV, get_profile
    from vggrepro.experiments import grid, results

    monkeypatch.setenv("VGGREPRO_RUNS", str(tmp_path / "runs"))
    seen = {}

    def chapter(source, path, parameters, **kwargs):  # what the kernel would see, without running it
        prof = get_profile(parameters["profile"])
        seen[Path(path).stem] = dict(
            parameters=dict(parameters), profile=prof, net=grid.run_of(prof, "A/256").settings["profile"]["width"]
        )
        runs.save_claims(prof.name, Path(path).stem, [dict(claim="c", paper="p", ours="o", verdict="holds")])
        return source

    monkeypatch.setattr(papermill, "execute_notebook", chapter)
    assert cli.main(["book", "run", "-p", "width=0.0625", "--only", "02", "--output", str(tmp_path / "out")]) == 0
    assert seen["02_training"]["parameters"] == {"profile": "ci"}  # 02 declares no width ...
    assert (
        seen["02_training"]["profile"].width == 0.0625 and seen["02_training"]["net"] == 0.0625
    )  # ... yet trains at it
    assert "profile width=0.0625" in capsys.readouterr().out
    assert OVERRIDES_ENV not in os.environ and runs.VARIANT_ENV not in os.environ  # only while a chapter runs

    seen.clear()
    book.run_book(only="01,02,07", parameters={"width": 0.0625, "epochs": 1}, output=tmp_path / "out", echo=quiet)
    ci = get_profile("ci")
    first, second, seventh = seen["01_architecture"], seen["02_training"], seen["07_localisation"]
    assert first["parameters"]["width"] == 0.0625 and first["profile"].epochs == 1  # 01 declares width itself
    assert (second["profile"].width, second["profile"].epochs) == (0.0625, 1)
    assert seventh["parameters"]["epochs"] == 1 and seventh["profile"].epochs == ci.epochs  # 07's own epochs
    assert seventh["profile"].width == 0.0625
    # the claims went to claims-<variant>/, and the results page reads none of them as ci's
    assert sorted(p.name for p in (tmp_path / "runs" / "ci").iterdir()) == [
        "claims-epochs=1,width=0.0625",
        "claims-width=0.0625",
    ]
    assert results.profile_claims("ci", runs=tmp_path / "runs", results=tmp_path / "results") == {}
    # a bad value of a knob fails before any chapter runs
    seen.clear()
    with pytest.raises(ValueError, match="width=0"):
        book.run_book(only="02", parameters={"width": 0}, output=tmp_path / "out", echo=quiet)
    assert not seen


def test_a_kernel_sees_the_profile_knobs_of_book_run(toy_book):
    # a real kernel (of a toy chapter, not the book's): the override travels through its environment
    probe = toy_notebook(
        parameters_cell('profile = "ci"'),
        new_code_cell(
            "from vggrepro.core.profiles import get_profile\n"
            "print(get_profile(profile).width, get_profile(profile).epochs)"
        ),
    )
    nbformat.write(probe, toy_book / "book" / "01_square.ipynb")
    [out] = book.run_book(only="01", parameters={"width": 0.0625}, root=toy_book, echo=quiet)
    printed = nbformat.read(out, as_version=4).cells[-1].outputs[0]["text"]
    assert printed.split() == ["0.0625", "10"]


def test_inplace_refresh_stores_clean_outputs(toy_book):
    stored = toy_book / "book" / "01_square.ipynb"
    before = nbformat.read(stored, as_version=4)
    book.run_book(only="01", inplace=True, root=toy_book, echo=quiet)
    after = nbformat.read(stored, as_version=4)
    # The same cells (no injected-parameters cell), ids and notebook metadata; only outputs are new.
    assert [(c.id, c.source) for c in after.cells] == [(c.id, c.source) for c in before.cells]
    assert {k: after.metadata[k] for k in before.metadata} == before.metadata
    assert "papermill" not in json.dumps([c.metadata for c in after.cells])
    assert after.cells[-1].outputs[0]["text"].split() == ["ci", "None", "9", "book"]
    assert [c.execution_count for c in after.cells if c.cell_type == "code"] == [1, 2]


def test_first_failure_names_the_notebook_and_cell(toy_book):
    with pytest.raises(book.NotebookFailed) as failed:
        book.run_book(root=toy_book, echo=quiet)
    e = failed.value
    assert e.notebook == Path("book/02_fails.ipynb")
    assert e.cell == 2 and e.ename == "ZeroDivisionError"  # the third cell of the stored notebook
    assert "1 / 0" in str(e) and e.output.exists()


def test_progress_counts_the_cells_and_keeps_one_line_per_notebook(toy_book):
    """`book run` shows, live, the cells each notebook has done (papermill's bar on stderr), then the
    notebook's one line with its outcome and time, as without the bar."""
    import io

    bar, lines = io.StringIO(), []
    with pytest.raises(book.NotebookFailed):
        book.run_book(root=toy_book, echo=lambda text, **kw: lines.append(text), progress=bar)
    shown = bar.getvalue().split("\r")
    for name in ("[1/2] book/01_square.ipynb", "[2/2] book/02_fails.ipynb"):
        counts = [
            re.fullmatch(re.escape(f"{name} (profile='ci') ... ") + r"(\d)/4 cells \[\d\d:\d\d\]", s)
            for s in shown
            if s.startswith(name)
        ]  # 3 cells and papermill's injected one
        assert [int(c[1]) for c in counts] == [0, 1, 2, 3, 4]
    assert shown[-1] == "" and not shown[-2].strip()  # the bar erased itself
    assert len(lines) == 2
    assert re.fullmatch(
        r"\[1/2\] book/01_square.ipynb \(profile='ci'\) \.\.\. ok in [0-9.]+ s -> "
        r"runs/ci/book/01_square.ipynb",
        lines[0],
    )
    assert re.fullmatch(r"\[2/2\] book/02_fails.ipynb \(profile='ci'\) \.\.\. FAILED after [0-9.]+ s", lines[1])


# -- the real book: a papermill parameter changes Table 2's "this run" column ---------------------


def table2_this_run(nb_path: Path) -> dict[str, int]:
    """{config: weights} from the "this run" column of Table 2 in an executed 01 notebook.

    01 shows Table 2 as a DataFrame indexed by config, with a column "this run (width w)"; this
    reads its HTML output as the site would render it."""
    from bs4 import BeautifulSoup

    nb = nbformat.read(nb_path, as_version=4)
    html = [
        o["data"]["text/html"]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "text/html" in o.get("data", {})
    ]
    found = []
    for table in (BeautifulSoup(h, "html.parser").find("table") for h in html):
        header = [th.get_text(strip=True) for th in table.find("thead").find("tr").find_all("th")] if table else []
        found += [(table, i) for i, h in enumerate(header) if h.startswith("this run (width")]
    assert len(found) == 1, f"{nb_path.name}: expected one Table 2 output with a 'this run (width ...)' column"
    table, column = found[0]
    rows = {}
    for tr in table.find("tbody").find_all("tr"):
        cells = [x.get_text(strip=True) for x in tr.find_all(["th", "td"])]
        rows[cells[0]] = int(cells[column])
    return rows


@pytest.mark.slow
def test_width_parameter_changes_table2(tmp_path, monkeypatch):
    """01 run with -p width=0.0625: its Table 2 column is that width's exact count, not the ci one."""
    from vggrepro import models
    from vggrepro.core import profiles

    stored_nb = ROOT / "book" / "01_architecture.ipynb"
    if not stored_nb.exists():
        pytest.skip("book/01_architecture.ipynb (the stored ci run) is not in the book yet")
    monkeypatch.setenv("VGGREPRO_RUNS", str(tmp_path / "runs"))  # the kernel's run folders: not the ci ones
    [executed] = book.run_book(only="01", parameters={"width": 0.0625}, output=tmp_path, echo=quiet)
    narrow, stored = table2_this_run(executed), table2_this_run(stored_nb)
    ci = profiles.get_profile("ci")
    assert narrow.keys() == stored.keys() and narrow
    # By hand, net A at width 1/16: convs 3>4 | 4>8 | 8>16, 16>16 | 16>32, 32>32 | 32>32, 32>32, 3x3 with
    # biases: 112 + 296 + 1168 + 2320 + 4640 + 3 * 9248 = 36280; a 32 crop leaves 1x1x32 = 32 inputs to
    # fc6 (256), fc7 (256), fc8 (10 classes): 8448 + 65792 + 2570 = 76810.
    assert (ci.crop, ci.num_classes) == (32, 10) and narrow["A"] == 36280 + 76810
    for config, count in narrow.items():
        assert count != stored[config]
        net = models.build(config, width=0.0625, num_classes=ci.num_classes, crop=ci.crop)
        assert count == models.count_params(net)


# -- the site, built once per session and opened in headless Chromium -----------------------------


@pytest.fixture(scope="session")
def site() -> Path:
    return book.build_site()


def chromium(url: str, tmp: Path, *args: str) -> str:
    """Headless Chromium on a local page, never on the network, always under a time limit."""
    cmd = [
        "timeout", "120", CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp / 'chromium-profile'}", "--virtual-time-budget=5000", *args, url,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done.stdout


def dom(page: Path, tmp: Path):
    from bs4 import BeautifulSoup

    return BeautifulSoup(chromium(page.as_uri(), tmp, "--dump-dom"), "html.parser")


def numbers_in(cell_text: str) -> list[float]:
    out = []
    for word in cell_text.replace(",", "").split():
        try:
            out.append(float(word))
        except ValueError:
            pass
    return out


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (.ci/run installs it)")
def test_site_in_a_browser(site, tmp_path):
    title = yaml.safe_load((ROOT / "_config.yml").read_text())["title"]
    home = dom(site / "index.html", tmp_path)  # index.html redirects to the intro page
    shown = home.select_one(".logo__title")
    assert shown is not None and shown.get_text(strip=True) == title, "the book's title is not in the page header"

    # The table of contents links every notebook of _toc.yml.
    links = {a.get("href", "").split("#")[0] for a in home.select("nav a")}
    for nb in book.notebooks():
        assert f"{nb.parent.name}/{nb.stem}.html" in links, f"{nb.stem} is not in the rendered table of contents"

    # Table 2 of the paper, its numbers from paper_tables.json, rendered on 01's page.
    page = site / "book" / "01_architecture.html"
    if not page.exists():
        pytest.skip("book/01_architecture is not in the book yet")
    tables = [
        [[cell.get_text(" ", strip=True) for cell in tr.find_all(["td", "th"])] for tr in table.find_all("tr")]
        for table in dom(page, tmp_path).find_all("table")
    ]

    def shows_table2(rows) -> bool:
        """Every row of the paper's Table 2: one of its configs beside its weights in millions."""
        return all(
            any(
                set(entry["configs"]) & set(row) and entry["params_millions"] in numbers_in(" ".join(row))
                for row in rows
            )
            for entry in paper.table("table2_params_millions")
        )

    assert any(shows_table2(rows) for rows in tables), "no rendered table shows the paper's Table 2"

    # A picture of the page, next to the build (the README's docs/site.png is one of these).
    shot = site.parent / "screenshots" / "01_architecture.png"
    shot.parent.mkdir(exist_ok=True)
    chromium(page.as_uri(), tmp_path, f"--screenshot={shot}", "--window-size=1280,900", "--hide-scrollbars")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def table_rows(soup) -> list[list[list[str]]]:
    """Every table of a page as rows of cell texts (whitespace collapsed)."""
    return [
        [
            [" ".join(cell.get_text(" ", strip=True).split()) for cell in tr.find_all(["td", "th"])]
            for tr in table.find_all("tr")
        ]
        for table in soup.find_all("table")
    ]


def chapter_claims(page: Path) -> list[tuple[str, str, str]]:
    """(claim, paper, this run) of the claims table on a chapter's page (the static HTML of the site)."""
    from bs4 import BeautifulSoup

    found = []
    for rows in table_rows(BeautifulSoup(page.read_text(), "html.parser")):
        header = rows[0] if rows else []
        if {"claim", "paper", "this run", "verdict"} <= set(header):
            # pandas puts an empty corner cell (the index) before the columns; body rows start with the index
            offset = len(rows[1]) - len(header) if len(rows) > 1 else 0
            at = {name: header.index(name) + offset for name in ("claim", "paper", "this run")}
            found += [(r[at["claim"]], r[at["paper"]], r[at["this run"]]) for r in rows[1:] if len(r) == len(rows[1])]
    return found


def same_text(full: str, shown: str) -> bool:
    """Equal, or ``shown`` is ``full`` cut short by pandas (a chapter may truncate long cells with "...")."""
    return full == shown or (shown.endswith("...") and full.startswith(shown[:-3].rstrip()))


def test_chapters_are_numbered_on_the_site_as_their_files_are(site):
    """The paper's chapters carry their file's number in the page title and in the table of
    contents (01_architecture is "1. The architecture"); the results page and the appendix none."""
    from bs4 import BeautifulSoup

    contents = BeautifulSoup((site / "intro.html").read_text(), "html.parser").select("nav a")
    for nb in book.notebooks():
        page = BeautifulSoup((site / "book" / f"{nb.stem}.html").read_text(), "html.parser")
        number = page.select_one(".bd-article h1").select_one(".section-number")
        shown = number.get_text(strip=True) if number else None
        nav = [a.get_text(" ", strip=True) for a in contents if a.get("href", "").endswith(f"{nb.stem}.html")]
        if int(nb.stem[:2]) <= 8:
            assert shown == f"{int(nb.stem[:2])}.", f"{nb.stem}: the title's number is {shown!r}"
            assert any(text.startswith(f"{int(nb.stem[:2])}. ") for text in nav), f"{nb.stem}: contents show {nav}"
        else:
            assert shown is None, f"{nb.stem} is reference material, yet numbered {shown!r}"


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (.ci/run installs it)")
def test_results_page_lists_every_chapters_claims(site, tmp_path):
    """The results page, as a browser renders it, has a row for each claim of every chapter's own
    claims table, with the paper's number and the ci run's number that the chapter shows."""
    page = site / "book" / "09_results.html"
    if not page.exists():
        pytest.skip("book/09_results is not in the book yet")
    tables = table_rows(dom(page, tmp_path))
    claims_tables = [rows for rows in tables if rows and {"paper", "ci", "gpu", "imagenet"} <= set(rows[0])]
    assert claims_tables, "the results page shows no table with the paper's and each profile's numbers"
    shown = [row for rows in claims_tables for row in rows]
    checked = 0
    for nb in book.notebooks():
        chapter = site / "book" / f"{nb.stem}.html"
        if nb.stem.endswith("_results") or not chapter.exists():
            continue
        for claim in chapter_claims(chapter):
            # the row holds the claim, then the paper's number, then the ci run's number
            assert any(
                all(same_text(row[i + k], claim[k]) for k in range(3)) for row in shown for i in range(len(row) - 2)
            ), f"{nb.stem}: the results page has no row for {claim[0]!r} with {claim[1]!r} and {claim[2]!r}"
            checked += 1
    assert checked, "no chapter page shows a claims table"


# -- the README keeps telling the truth -----------------------------------------------------------


def test_readme_quick_start_and_profiles_table():
    from vggrepro.core.profiles import PROFILES

    readme = (ROOT / "README.md").read_text()
    assert "bash install.sh && .venv/bin/vggrepro book run" in readme
    assert "bash install.sh && .venv/bin/python -m pytest --nbval" in readme
    assert (ROOT / "install.sh").exists()
    assert 'vggrepro = "vggrepro.cli.main:main"' in (ROOT / "pyproject.toml").read_text()
    assert (ROOT / "docs" / "site.png").exists(), "the README's picture of the site"
    rows = {
        line.split("|")[1].strip(" `").split("`")[0]: line for line in readme.splitlines() if line.startswith("| `")
    }
    for name, p in PROFILES.items():
        cells = [c.strip() for c in rows[name].split("|")[1:-1]]
        assert cells[4:9] == [
            str(p.crop),
            f"{p.S(256)}, {p.S(384)}",
            f"[{p.jitter[0]}, {p.jitter[1]}]",
            str(p.num_classes),
            str(p.batch_size),
        ], f"README's row for {name} disagrees with vggrepro/core/profiles.py"
        assert cells[3] == ("1" if p.width == 1 else f"1/{round(1 / p.width)}")


def test_the_paper_is_cited_the_same_way_everywhere():
    """references.bib feeds the book's bibliography; the README's BibTeX of the paper is its entry,
    CITATION.cff names the same paper, and the intro cites it and links arXiv."""
    bib = (ROOT / "references.bib").read_text()
    entry = re.search(r"^@inproceedings\{simonyan2015vgg,.*?^\}", bib, re.S | re.M)[0]
    assert f"```bibtex\n{entry}\n```" in (ROOT / "README.md").read_text()
    assert yaml.safe_load((ROOT / "_config.yml").read_text())["bibtex_bibfiles"] == ["references.bib"]
    intro = (ROOT / "intro.md").read_text()
    assert "{cite:t}`simonyan2015vgg`" in intro and "```{bibliography}" in intro
    for text in (intro, (ROOT / "README.md").read_text()):
        assert "[arXiv:1409.1556 v6](https://arxiv.org/abs/1409.1556v6)" in text
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    [paper] = cff["references"]
    assert paper["title"] in entry and paper["year"] == 2015 and paper["url"] == "https://arxiv.org/abs/1409.1556"
    assert f'version = "{cff["version"]}"' in (ROOT / "pyproject.toml").read_text()  # the same release


def test_sync_leaves_the_chapters_unchanged(tmp_path):
    """`vggrepro book sync` (jupytext --sync) and a save in JupyterLab rewrite a twin from the other;
    with no tool versions in the headers, an unedited chapter comes back byte for byte."""
    shutil.copy(ROOT / "jupytext.toml", tmp_path)
    (tmp_path / "book").mkdir()
    for chapter in sorted((ROOT / "book").glob("*.py")):
        for twin in (chapter, chapter.with_suffix(".ipynb")):
            shutil.copy(twin, tmp_path / "book")
    before = {p.name: p.read_bytes() for p in (tmp_path / "book").iterdir()}
    for newer in (".ipynb", ".py"):  # jupytext --sync takes the newer twin as the source
        for p in (tmp_path / "book").glob(f"*{newer}"):
            p.touch()
        book.sync_twins(tmp_path)
        after = {p.name: p.read_bytes() for p in (tmp_path / "book").iterdir()}
        assert [n for n in before if after[n] != before[n]] == [], f"sync from the {newer} twins changed them"


def test_nbval_runs_from_the_book_folder():
    """The README's nbval check, run from book/ rather than the project's root (the sanitize file is
    named relative to the project)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", "-q", "01_architecture.ipynb"],
        cwd=ROOT / "book",
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


#: Injected into a copy of a page: after layout, every table and code block of the article that runs
#: past the article's right edge without sitting in a scroll container, written into the body.
OVERFLOW_PROBE = """<script>
window.addEventListener("load", () => {
  const column = document.querySelector(".bd-article");
  const edge = column.getBoundingClientRect().right + 1;
  const scrolls = (el) => {
    for (let e = el; e && e !== column; e = e.parentElement) {
      const x = getComputedStyle(e).overflowX;
      if ((x === "auto" || x === "scroll") && e.getBoundingClientRect().right <= edge) return true;
    }
    return false;
  };
  const over = [...column.querySelectorAll("table, pre")]
    .filter((el) => el.getBoundingClientRect().right > edge && !scrolls(el))
    .map((el) => el.tagName + ": " + el.textContent.trim().slice(0, 60));
  document.body.setAttribute("data-overflow", JSON.stringify(over));
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (.ci/run installs it)")
@pytest.mark.parametrize("width", [1280, 390])  # a laptop, and a phone
def test_no_table_or_code_block_runs_past_the_column(site, tmp_path, width):
    overflowing = {}
    for nb in book.notebooks():
        found = probed(site / "book" / f"{nb.stem}.html", OVERFLOW_PROBE, "data-overflow", tmp_path, width)
        if found:
            overflowing[nb.stem] = found
    assert overflowing == {}, f"at {width} px these run past the column: {overflowing}"


def dom_at(page: Path, tmp: Path, width: int):
    from bs4 import BeautifulSoup

    return BeautifulSoup(chromium(page.as_uri(), tmp, f"--window-size={width},900", "--dump-dom"), "html.parser")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (.ci/run installs it)")
def test_the_overflow_probe_sees_a_table_past_the_column_and_lets_a_scrolling_one_be(tmp_path):
    page = tmp_path / "toy.html"
    page.write_text(
        '<html><body><div class="bd-article" style="width:300px">'
        '<table style="width:900px"><tr><td>wide</td></tr></table>'
        '<div style="overflow-x:auto;width:300px"><pre style="width:900px">scrolls</pre></div>'
        "</div>" + OVERFLOW_PROBE + "</body></html>"
    )
    assert json.loads(dom_at(page, tmp_path, 1280).body["data-overflow"]) == ["TABLE: wide"]


#: Injected into a copy of the results page: the first row of the claims matrix scrolled into view,
#: then the text of its claim cell and its ci cell, each with whether it lies wholly in the viewport.
MATRIX_PROBE = """<script>
window.addEventListener("load", () => {
  const table = document.querySelector("table.claims-matrix");
  if (!table) { document.body.setAttribute("data-matrix", "{}"); return; }
  const header = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
  const row = table.querySelector("tbody tr");
  row.scrollIntoView({block: "center"});
  const seen = (el) => {
    const r = el.getBoundingClientRect();
    return {text: el.textContent.trim(), inside: r.left >= 0 && r.right <= window.innerWidth
            && r.top >= 0 && r.bottom <= window.innerHeight && r.width > 0};
  };
  const cells = row.querySelectorAll("td");
  // the nearest box that scrolls sideways: the table fits when it need not scroll
  let box = table.parentElement;
  while (box && !["auto", "scroll"].includes(getComputedStyle(box).overflowX)) box = box.parentElement;
  const fits = !box || box.scrollWidth <= box.clientWidth + 1;
  document.body.setAttribute("data-matrix", JSON.stringify(
    {header: header, claim: seen(cells[header.indexOf("claim")]), ci: seen(cells[header.indexOf("ci")]),
     fits: fits}));
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (.ci/run installs it)")
def test_results_matrix_reads_on_a_phone(site, tmp_path):
    """At 390 px the results page's claims matrix shows its first row's claim and ci verdict without
    scrolling sideways (the other scales may scroll, inside the table)."""
    found = probed(site / "book" / "09_results.html", MATRIX_PROBE, "data-matrix", tmp_path, 390)
    assert found, "the results page has no claims matrix (table.claims-matrix)"
    assert found["header"][:3] == ["#", "claim", "ci"], found["header"]
    assert found["claim"]["text"] and found["claim"]["inside"], f"the first claim is not in view: {found['claim']}"
    verdict = found["ci"]["text"]
    assert verdict.startswith(("holds", "does not hold", "undecided")), verdict
    assert found["ci"]["inside"], f"the first row's ci verdict is not in view at 390 px: {found['ci']}"


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (.ci/run installs it)")
def test_results_matrix_shows_every_scale_at_1280_px(site, tmp_path):
    """At 1280 px every scale's column sits beside the claims without scrolling sideways: the
    imagenet column was once cut off at the table's edge."""
    found = probed(site / "book" / "09_results.html", MATRIX_PROBE, "data-matrix", tmp_path, 1280)
    assert found["header"][-1] == "imagenet", found["header"]
    assert found["fits"], f"the claims matrix scrolls sideways at 1280 px: {found['header']}"


#: Injected into a copy of a page: every image that a code cell put out and that does not sit in a
#: <figure> with a shown <figcaption> carrying a figure number ("Figure 3"), written into the body.
CAPTION_PROBE = """<script>
window.addEventListener("load", () => {
  const shown = (el) => el && el.getBoundingClientRect().height > 0;
  const bad = [...document.querySelectorAll(".cell_output img")].filter((img) => {
    const caption = img.closest("figure")?.querySelector("figcaption");
    const number = caption?.querySelector(".caption-number")?.textContent ?? "";
    const text = caption ? caption.textContent.replace(number, "").trim() : "";
    return !(shown(caption) && /Figure \\d+/.test(number) && text.length > 0);
  }).map((img) => (img.closest(".cell")?.textContent ?? "").trim().slice(0, 60));
  document.body.setAttribute("data-uncaptioned", JSON.stringify(bad));
});
</script>"""


def probed(page: Path, probe: str, attribute: str, tmp: Path, width: int = 1280):
    """What ``probe`` wrote into ``attribute`` of the body of a copy of ``page`` in Chromium."""
    copy = page.with_name(f"_probe_{page.stem}.html")  # beside the page, so its links still resolve
    copy.write_text(page.read_text().replace("</body>", probe + "</body>"))
    try:
        soup = dom_at(copy, tmp, width)
    finally:
        copy.unlink()
    found = json.loads(soup.body.get(attribute, "null"))
    assert found is not None, f"the probe did not run on {page.name}"
    return found


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (.ci/run installs it)")
def test_every_figure_of_a_chapter_has_a_numbered_caption(site, tmp_path):
    uncaptioned, images = {}, 0
    for nb in book.notebooks():
        page = site / "book" / f"{nb.stem}.html"
        images += len(re.findall(r'class="cell_output[^"]*"[\s\S]*?<img', page.read_text()))
        found = probed(page, CAPTION_PROBE, "data-uncaptioned", tmp_path)
        if found:
            uncaptioned[nb.stem] = found
    assert images > 0, "no chapter page shows an image: the probe would have nothing to check"
    assert uncaptioned == {}, f"images without a numbered caption (cells starting): {uncaptioned}"


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (.ci/run installs it)")
def test_the_caption_probe_sees_a_bare_image_and_lets_a_numbered_figure_be(tmp_path):
    page = tmp_path / "toy.html"
    pixel = (
        "data:image/png;base64,"
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    )
    page.write_text(
        '<html><body><div class="cell"><div class="cell_output"><img src="' + pixel + '"></div>bare</div>'
        '<div class="cell"><div class="cell_output"><figure><img src="' + pixel + '">'
        '<figcaption><span class="caption-number">Figure 1 </span>A picture.</figcaption></figure></div>'
        "numbered</div>" + CAPTION_PROBE + "</body></html>"
    )
    assert probed(page, CAPTION_PROBE, "data-uncaptioned", tmp_path) == ["bare"]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_shown_code_fits_the_column(chapter):
    """Code a reader sees (cells not folded by hide-input/remove-input) fits the page's column;
    the package code a chapter prints is checked in tests/test_figures.py."""
    import jupytext

    from vggrepro.experiments.figures import COLUMN

    wide = []
    for cell in jupytext.read(ROOT / "book" / f"{chapter}.py").cells:
        tags = set(cell.metadata.get("tags", []))
        if cell.cell_type != "code" or tags & {"hide-input", "remove-input", "remove-cell"}:
            continue
        wide += [line for line in cell.source.splitlines() if len(line) > COLUMN]
    assert wide == [], f"{chapter}: shown code lines wider than {COLUMN} characters: {wide}"


#: Injected into a copy of a page: the code a reader sees (shown cells' input, code blocks of the
#: text, and package source a cell prints) that needs a horizontal scroll, written into the body.
CODE_PROBE = """<script>
window.addEventListener("load", () => {
  const folded = (p) => p.closest(".tag_hide-input .cell_input, .tag_remove-input .cell_input");
  const listing = (p) => !p.closest(".cell_output") || /^(def|class) /.test(p.textContent);
  const wide = [...document.querySelectorAll(".bd-article pre")]
    .filter((p) => !folded(p) && listing(p) && p.scrollWidth > p.clientWidth + 1)
    .map((p) => p.textContent.split("\\n").reduce((a, b) => (b.length > a.length ? b : a), ""));
  document.body.setAttribute("data-wide-code", JSON.stringify(wide));
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (.ci/run installs it)")
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_shown_code_needs_no_scrolling(site, tmp_path, chapter):
    """At 1280 px every line of code a reader sees fits the column: no sideways scrolling."""
    wide = probed(site / "book" / f"{chapter}.html", CODE_PROBE, "data-wide-code", tmp_path)
    assert wide == [], f"{chapter}: code lines that need scrolling at 1280 px: {wide}"


#: Written into a page holding the results page's matrix: the contrast ratio (WCAG) of each cell's
#: text against the background it is painted on (the first opaque one, walking up), the lowest of all.
CONTRAST_PROBE = """<script>
window.addEventListener("load", () => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const worst = {ratio: 99, text: ""};
  for (const el of document.querySelectorAll("table.claims-matrix td, table.claims-matrix td *")) {
    if (!el.childNodes.length || ![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(background(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < worst.ratio) Object.assign(worst, {ratio: ratio, text: el.textContent.trim().slice(0, 40)});
  }
  document.body.setAttribute("data-contrast", JSON.stringify(worst));
});
</script>"""


def theme_styles() -> list[Path]:
    """The installed theme's stylesheets (pydata-sphinx-theme under sphinx-book-theme), as the site
    links them, then the book's own."""
    import pydata_sphinx_theme
    import sphinx_book_theme

    found = [
        *Path(pydata_sphinx_theme.__file__).parent.glob(
            "theme/pydata_sphinx_theme/static/styles/pydata-sphinx-theme.css"
        ),
        *Path(sphinx_book_theme.__file__).parent.glob("theme/sphinx_book_theme/static/styles/sphinx-book-theme.css"),
    ]
    return [*found, ROOT / "_static" / "custom.css"] if len(found) == 2 else []


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (.ci/run installs it)")
@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_results_matrix_reads_in_light_and_dark_mode(tmp_path, theme):
    """The claims matrix, as myst-nb wraps an HTML output, under the theme's own stylesheets: every
    cell's text stands out from its background (WCAG's 4.5:1) in both modes. In dark mode the theme
    boxes an HTML output that is not a table.dataframe in a light panel: the matrix once read dark
    on dark in its claim column and odd rows."""
    from vggrepro.experiments import results

    styles = theme_styles()
    if not styles:
        pytest.skip("the site's theme is not installed")
    rows = [
        {"#": "4.1", "claim": "Error falls with depth: B beats A", "ci": "undecided (1 chain), -15.6", "gpu": "-"},
        {"#": "4.2", "claim": "C beats B", "ci": "holds (3 chains), -2.0 [-4.0, -0.1]", "gpu": "-"},
        {"#": "4.3", "claim": "D beats C", "ci": "does not hold (3 chains), +2.0 [+0.1, +4.0]", "gpu": "-"},
    ]
    links = "".join(f'<link rel="stylesheet" href="{s.as_uri()}">' for s in styles)
    page = tmp_path / "matrix.html"
    page.write_text(
        f'<!DOCTYPE html><html data-theme="{theme}"><head>{links}</head>'
        '<body style="background: var(--pst-color-background)"><div class="bd-content"><article class="bd-article">'
        '<div class="cell_output docutils container"><div class="output text_html">'
        f"{results.matrix_html(rows, chapters=['04_single_scale'])}</div></div></article></div>"
        f"{CONTRAST_PROBE}</body></html>"
    )
    worst = json.loads(dom_at(page, tmp_path, 1280).body["data-contrast"])
    assert worst["ratio"] >= 4.5, f"in {theme} mode, {worst['text']!r} hardly stands out: {worst['ratio']:.1f}:1"


#: Written into a page of tables beside the paper: per table, its first "ours ..." header and whether
#: it lies wholly inside the page's column, unscrolled.
OURS_PROBE = """<script>
window.addEventListener("load", () => {
  const column = document.querySelector(".bd-article").getBoundingClientRect();
  const found = [...document.querySelectorAll(".bd-article table")].map((table) => {
    const th = [...table.querySelectorAll("thead th")].find((c) => c.textContent.trim().startsWith("ours"));
    const r = th.getBoundingClientRect();
    return {ours: th.textContent.trim(), inside: r.left >= column.left && r.right <= column.right + 1};
  });
  document.body.setAttribute("data-ours", JSON.stringify(found));
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (.ci/run installs it)")
def test_ours_is_in_view_on_a_phone(tmp_path):
    """Tables 3, 4, 5 and 9 as the chapters build them (paper.whole: this run's column right after the
    paper's), under the theme's stylesheets and the book's own, in a phone's 358-pixel column: the
    first "ours" column is in view without scrolling the table."""
    import pandas as pd

    from vggrepro.experiments import grid

    styles = theme_styles()
    if not styles:
        pytest.skip("the site's theme is not installed")

    def ours(names, **extra):
        return [
            dict(config=grid.entry(n).config, train_S=grid.entry(n).train_S, top1_val_err=55.55, **extra) for n in names
        ]

    on = ("config", "train_S")
    t3 = paper.whole("table3_single_scale", ours(grid.TABLE3, **{"ours top1, centre crop": 44.4}), on, ["top1_val_err"])
    t4 = paper.whole("table4_multi_scale", ours(grid.TABLE4, **{"our Q": "32,37,41"}), on, ["top1_val_err"])
    t5 = paper.whole(
        "table5_dense_vs_multicrop",
        [dict(r, eval_method="dense") for r in ours(["D/jit"])],
        (*on, "eval_method"),
        ["top1_val_err"],
    )
    nine = [{"train_S": "256", "test_Q": "256", "top5_loc_err_val": 60.0, "ours, central crop only": 70.0}]
    t9 = paper.whole("table9_localisation_error", nine, ("train_S", "test_Q"), ["top5_loc_err_val"])
    frames = [pd.DataFrame(t3).set_index(list(on)), pd.DataFrame(t4).set_index(list(on)), pd.DataFrame(t5)]
    frames.append(pd.DataFrame(t9))
    outputs = "".join(
        f'<div class="cell_output docutils container"><div class="output text_html">{f._repr_html_()}</div></div>'
        for f in frames
    )
    links = "".join(f'<link rel="stylesheet" href="{s.as_uri()}">' for s in styles)
    script = (ROOT / "_static" / "tables.js").as_uri()
    page = tmp_path / "tables.html"
    page.write_text(
        f'<!DOCTYPE html><html data-theme="light"><head><meta name="viewport" content="width=device-width">{links}'
        f'<script src="{script}"></script></head><body><div class="bd-content">'
        f'<article class="bd-article" style="width:358px;margin:0 16px">{outputs}</article></div>'
        f"{OURS_PROBE}</body></html>"
    )
    found = json.loads(dom_at(page, tmp_path, 390).body["data-ours"])
    assert len(found) == 4
    assert all(f["inside"] for f in found), f"this run's column is off screen at 390 px: {found}"


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (.ci/run installs it)")
def test_a_link_from_the_results_page_finds_its_row_in_the_chapter(tmp_path):
    """A chapter's claims table (claims.table: rows numbered 4.1, 4.2 ...) gets an id per row from
    _static/claims.js, the matrix's links (claims.anchor) point at those ids, and a page opened at
    one marks that row."""
    from bs4 import BeautifulSoup

    from vggrepro.experiments import claims, results

    rows = [claims.design_fact(f"fact {i}", "paper", "ours", True) for i in range(3)]
    table = claims.table(rows, "04_single_scale")._repr_html_()
    script = (ROOT / "_static" / "claims.js").as_uri()
    page = tmp_path / "04_single_scale.html"
    page.write_text(
        f'<html><head><script src="{script}"></script></head><body><div class="cell_output">{table}</div></body></html>'
    )
    link = results.matrix_html([{"#": "4.2", "claim": "fact 1", "ci": "holds (exact)"}], chapters=["04_single_scale"])
    href = re.search(r'href="([^"]+)"', link)[1]
    assert href == "04_single_scale.html#claim-4-2"
    soup = BeautifulSoup(chromium(page.as_uri() + "#claim-4-2", tmp_path, "--dump-dom"), "html.parser")
    assert [tr.get("id") for tr in soup.select("tbody tr")] == ["claim-4-1", "claim-4-2", "claim-4-3"]
    assert "claim-target" in soup.select_one("#claim-4-2")["class"]
    assert "claims-table" in soup.select_one("table")["class"]
