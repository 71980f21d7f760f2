"""Every chapter of the paper ends with two or three exercises a reader can run at `ci`, each with a
hint; an answer, where there is one, folded (a MyST admonition of class dropdown)."""

import re

import jupytext
import pytest

from vggrepro.book import runner as book

CHAPTERS = [nb for nb in book.notebooks() if re.match(r"0[1-8]_", nb.stem)]


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda nb: nb.stem)
def test_each_chapter_ends_with_exercises_and_hints(notebook):
    last = jupytext.read(notebook.with_suffix(".py")).cells[-1]
    assert last.cell_type == "markdown" and last.source.startswith("## Exercises"), notebook.stem
    exercises = re.split(r"\*\*Exercise \d+\.\*\*", last.source)[1:]
    assert 2 <= len(exercises) <= 3, f"{notebook.stem}: {len(exercises)} exercises"
    for text in exercises:
        assert "*Hint:*" in text
        # an answer is folded, never shown beside the question
        assert text.count("```{admonition} Answer") == text.count(":class: dropdown")


def test_there_are_chapters():
    assert len(CHAPTERS) == 8
