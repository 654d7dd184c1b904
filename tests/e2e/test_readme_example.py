"""The README's "Use it inside your own tests" example, run as it is written there: a user copies it whole (the
section once showed a `with` block alone, and nothing of the clock, the Services calls or the aggregates)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    section = README.read_text(encoding="utf-8").split("## Use it inside your own tests", 1)[1].split("\n## ", 1)[0]
    [code] = re.findall(r"^```python\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    return code


def test_the_readme_example_runs_as_written(tmp_path: Path) -> None:
    namespace: dict = {}
    exec(compile(readme_example(), f"{README}: Use it inside your own tests", "exec"), namespace)  # noqa: S102
    [test] = [value for name, value in namespace.items() if name.startswith("test_")]
    test(tmp_path)
