"""The pytest plugin users test their own rules and adapters with (``bot4.testing``), loaded
through its entry point by a pytest run of a user's test file."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "testing.md"


def test_the_documented_user_tests_pass_with_the_plugin(tmp_path: Path) -> None:
    code = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)[0]
    (tmp_path / "test_mine.py").write_text(code)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_mine.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "2 passed" in result.stdout


def test_a_failing_user_test_fails_and_leaves_no_segment(tmp_path: Path) -> None:
    from bot4.shm.lifecycle import find_segments

    (tmp_path / "test_bad.py").write_text(
        "from pathlib import Path\n\n"
        "def test_wrong(bot4_desk):\n"
        "    Path('segment.txt').write_text(bot4_desk.name)\n"
        "    bot4_desk.risk.set_equity(5.0)\n"
        "    assert bot4_desk.risk.snapshot().equity == 6.0\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_bad.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1 and "1 failed" in result.stdout
    name = (tmp_path / "segment.txt").read_text()
    assert name.startswith("bot4-") and name not in find_segments()  # the fixture removed its core even so
