"""The ``vggrepro`` command as a reader meets it: ``--version``, and help for every command and option;
and where an installed copy (not an editable checkout) reads and writes."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from vggrepro.cli import main as cli
from vggrepro.core import profiles, project, runs


def commands(parser: argparse.ArgumentParser, name: str = "vggrepro"):
    """(name, parser, help in the parent's list) of the command and every sub-command under it."""
    yield name, parser, None
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            listed = {a.dest: a.help for a in action._choices_actions}
            for sub_name, sub in action.choices.items():
                for found, p, shown in commands(sub, f"{name} {sub_name}"):
                    yield found, p, listed.get(sub_name) if p is sub else shown


def test_every_command_and_option_is_explained():
    found = list(commands(cli.build_parser()))
    names = {name for name, _, _ in found}
    for command in (
        "train",
        "bench",
        "evaluate",
        "fuse",
        "data synth",
        "data check",
        "book run",
        "book build",
        "book sync",
    ):
        assert f"vggrepro {command}" in names
    for name, parser, listed in found:
        assert parser.description, f"{name} has no description"
        if name != "vggrepro":
            assert listed, f"{name} has no help line in its parent's list of commands"
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help != argparse.SUPPRESS, (
                f"{name} {'/'.join(action.option_strings) or action.dest} has no help"
            )
        parser.format_help()  # every %(...)s in a help string formats


@pytest.mark.parametrize("command", ["train", "evaluate", "book run"])
def test_profile_choices_are_listed(command, capsys):
    parser = dict((name, p) for name, p, _ in commands(cli.build_parser()))[f"vggrepro {command}"]
    [profile] = [a for a in parser._actions if "--profile" in a.option_strings]
    assert tuple(profile.choices) == profiles.NAMES
    assert ", ".join(profiles.NAMES) in parser.format_help().replace("\n", " ").replace("  ", " ")


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"vggrepro {cli.version()}"
    assert cli.version().count(".") >= 2  # e.g. 0.1.0, from the installed metadata


# -- an installed copy: the project is the checkout it is pointed at, never site-packages -----------


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """The package seen as a plain `pip install .` would put it: in a site-packages with no checkout beside."""
    site = tmp_path / "site-packages" / "vggrepro"
    site.mkdir(parents=True)
    monkeypatch.setattr(project, "PACKAGE_DIR", site)
    monkeypatch.delenv(project.HOME_ENV, raising=False)
    monkeypatch.delenv("VGGREPRO_RUNS", raising=False)
    return site


def checkout(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "_toc.yml").write_text("root: intro\n")
    (folder / "pyproject.toml").write_text('[project]\nname = "vggrepro"\n')
    return folder


def test_a_checkout_is_the_project(monkeypatch):
    monkeypatch.delenv("VGGREPRO_RUNS", raising=False)
    root = Path(runs.__file__).resolve().parents[2]  # this checkout: vggrepro/core/runs.py inside it
    monkeypatch.setenv(project.HOME_ENV, "/nowhere")  # not asked: the package's own checkout comes first
    assert project.project_root() == runs.REPO == root and runs.runs_root() == root / "runs"


def test_an_installed_copy_outside_a_checkout_says_how_to_fix_it(installed, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(project.NoProject, match="set VGGREPRO_HOME to your checkout .* `bash install.sh`"):
        runs.runs_root()
    with pytest.raises(project.NoProject):
        runs.REPO  # noqa: B018  (results/ is found through it)
    assert not (installed.parent / "runs").exists()
    # the command says it in one line
    assert cli.main(["book", "sync"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vggrepro book: error: vggrepro is installed outside a checkout") and "\n" not in err
    monkeypatch.setenv(project.HOME_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(project.NoProject, match="VGGREPRO_HOME=.*nowhere is not a checkout"):
        runs.runs_root()


def test_an_installed_copy_finds_its_checkout(installed, tmp_path, monkeypatch):
    clone = checkout(tmp_path / "clone")
    (clone / "book").mkdir()
    monkeypatch.chdir(clone / "book")  # a notebook's kernel runs in book/: the checkout is above it
    assert runs.runs_root() == clone / "runs" and runs.REPO == clone
    other = checkout(tmp_path / "other")
    monkeypatch.setenv(project.HOME_ENV, str(other))  # an explicit setting wins over the current folder
    assert runs.runs_root() == other / "runs"
    monkeypatch.setenv("VGGREPRO_RUNS", str(tmp_path / "elsewhere"))  # runs kept apart need no checkout
    monkeypatch.delenv(project.HOME_ENV)
    monkeypatch.chdir(tmp_path)
    assert runs.runs_root() == tmp_path / "elsewhere"
    assert runs.git_commit() == "unknown"


def test_book_run_shows_cell_progress_on_stderr_unless_asked_not_to(monkeypatch):
    import sys

    from vggrepro.cli import book as book_cli

    asked = []
    monkeypatch.setattr(book_cli, "run_book", lambda *a, **kw: asked.append(kw["progress"]) or [])
    assert cli.main(["book", "run", "--only", "01"]) == 0
    assert cli.main(["book", "run", "--only", "01", "--no-progress"]) == 0
    assert asked == [sys.stderr, None]
