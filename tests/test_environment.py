"""environment.yml (for conda users) must install exactly what install.sh installs from the pins."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def normalise(name: str) -> str:
    """PEP 503: names compare case-insensitively, with runs of - _ . as one separator."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lines) -> dict[str, str]:
    """{name: version} of the ``name==version`` lines; pip options and comments are not pins."""
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"{line!r} is not an exact pin (name==version)"
        assert normalise(name) not in out, f"{name} is pinned twice"
        out[normalise(name)] = version.strip()
    return out


def conda_environment() -> tuple[list, list[str]]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    pip_sections = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml needs exactly one pip: section"
    return [d for d in deps if isinstance(d, str)], [str(x) for x in pip_sections[0]]


def test_conda_python_is_the_projects():
    conda_deps, _ = conda_environment()
    assert "python=3.11" in conda_deps and "pip" in conda_deps
    # ... and satisfies the package's requires-python.
    requires = re.search(r'requires-python\s*=\s*">=\s*(\d+)\.(\d+)"', (ROOT / "pyproject.toml").read_text())
    assert requires and (3, 11) >= (int(requires.group(1)), int(requires.group(2)))


def test_pip_section_equals_the_lock():
    _, pip_lines = conda_environment()
    lock = pins((ROOT / "requirements.lock").read_text().splitlines())
    env = pins(pip_lines)
    missing = {k: v for k, v in lock.items() if env.get(k) != v}
    extra = {k: v for k, v in env.items() if lock.get(k) != v}
    assert not missing and not extra, (
        f"environment.yml differs from requirements.lock: lock has {missing}, environment.yml has {extra}"
    )
    assert len(lock) > 50  # the lock was parsed, not skipped


def test_pip_section_passes_the_constraints_like_install_sh():
    _, pip_lines = conda_environment()
    assert "-c constraints.txt" in pip_lines, "pip must get -c constraints.txt, as install.sh passes it"
    assert "-e ." in pip_lines, "the package itself is installed editable, as install.sh does"
    constraints = pins((ROOT / "constraints.txt").read_text().splitlines())
    assert constraints.get("torch") == "2.13.0"
    # Every constraint agrees with the pin both installs use.
    env = pins(pip_lines)
    assert {k: env.get(k) for k in constraints} == constraints
    assert "-c constraints.txt" in (ROOT / "install.sh").read_text()
