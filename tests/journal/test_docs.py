"""The journal's documentation: its example runs, and its schema is the one the store creates."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bot4.journal.store import _SCHEMA

DOC = Path(__file__).resolve().parents[2] / "docs" / "journal.md"


def test_the_example_runs(tmp_path: Path) -> None:
    example = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)[0]
    script = tmp_path / "example.py"
    script.write_text(example)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_documented_schema_is_the_schema() -> None:
    documented = re.search(r"```sql\n(.*?)```", DOC.read_text(), re.S)
    assert documented is not None
    assert documented.group(1).strip() in _SCHEMA
