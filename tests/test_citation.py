"""The book's citation says one thing everywhere: the intro's "Cite this book" BibTeX, CITATION.cff,
the package's version and the repository that the site's header links to (_config.yml)."""

import re
import tomllib

import yaml

from vggrepro.book import runner as book

ROOT = book.ROOT


def bibtex() -> dict[str, str]:
    """The fields of the intro's one BibTeX entry for the book."""
    block = re.search(r"```bibtex\n(@software\{[\s\S]*?)\n```", (ROOT / "intro.md").read_text())
    assert block, "intro.md has no 'Cite this book' BibTeX block (@software)"
    return {k: v.strip("{}") for k, v in re.findall(r"^\s*(\w+)\s*=\s*(\{.*\}),?$", block[1], re.M)}


def test_the_citation_is_the_same_in_the_intro_citation_cff_and_the_package():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    repository = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    entry = bibtex()
    assert cff["version"] == entry["version"] == version
    assert cff["title"] == entry["title"]
    # one address everywhere, or none anywhere (an invented one sends readers nowhere)
    assert cff.get("repository-code", "") == entry.get("url", "") == repository
    assert str(cff["date-released"])[:4] == entry["year"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(cff["date-released"]))


def test_the_site_header_links_the_repository_once_it_has_an_address():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = config["repository"]["url"]
    assert config["html"]["use_repository_button"] is bool(url)
    assert not url or url.startswith("https://")
