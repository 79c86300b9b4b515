"""The README's Python examples run as written, and its two commands are the ones CI runs."""
from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def test_python_examples_run():
    blocks = _blocks("python")
    assert len(blocks) >= 3
    namespace: dict = {}
    for code in blocks:
        exec(compile(code, str(README), "exec"), namespace)
    assert namespace["out"].shape == (2, 256, 1024)
    assert namespace["y"].shape == (4, 196, 256)
    assert namespace["traj"].blowup_time is not None


def test_ci_runs_the_readme_test_command():
    first = _blocks("bash")[0].strip().splitlines()
    assert len(first) == 2, "the README opens with exactly two commands"
    ci = (README.parent / ".ci" / "run").read_text()
    assert first[1] in ci
