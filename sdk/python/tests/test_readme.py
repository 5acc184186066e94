"""The README's quickstart runs as written, against the session's server."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(section: str) -> list[str]:
    """The Python code blocks of a ``## section`` of the README."""
    text = README.read_text()
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"the README has no section {section!r}"
    found = re.findall(r"```python\n(.*?)```", match.group(1), re.S)
    assert found, f"section {section!r} has no python block"
    return found


@pytest.mark.parametrize("section", ["Run code once", "Sandboxes", "Async"])
def test_the_quickstart_runs_as_written(section, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    cwd = os.getcwd()
    os.chdir(tmp_path)  # where its examples write local files
    try:
        namespace: dict[str, object] = {}
        for code in blocks(section):
            exec(compile(code, f"README.md ({section})", "exec"), namespace)
    finally:
        os.chdir(cwd)
    printed = capsys.readouterr().out
    expected = {
        "Run code once": ["success 0 42", "out/lines.txt b'2'"],
        "Sandboxes": ["42", "error ZeroDivisionError", "['in.txt']"],
        "Async": ["1", "4"],
    }[section]
    for line in expected:
        assert line in printed, f"{line!r} not in what {section!r} printed:\n{printed}"
