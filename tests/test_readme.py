"""Every Python block of the README runs.

The tour's blocks are one program, run in order in one process; a block with its own
``if __name__ == "__main__":`` is a program of its own. Segment names and the Redis address
are replaced by ones this test owns (a unique name; a redis-server it starts), and it removes
whatever it made, nothing else.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

from bot4.shm.lifecycle import find_segments, remove_if_stale
from tests.redis_server import RedisServer

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def blocks() -> list[str]:
    return BLOCK.findall(README.read_text())


def test_the_readme_has_python_blocks_to_run() -> None:
    assert len(blocks()) >= 8


def test_every_readme_python_block_runs(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    server = RedisServer()
    server.start()
    try:
        names = {'"desk"': f'"readme-{tag}"', '"desk-a"': f'"readme-a-{tag}"', '"btc-desk"': f'"readme-btc-{tag}"'}
        names["redis://10.0.0.5:6379/0"] = server.url

        def ours(code: str) -> str:
            for placeholder, real in names.items():
                code = code.replace(placeholder, real)
            return code

        tour = [ours(b) for b in blocks() if '__name__ == "__main__"' not in b]
        programs = [ours(b) for b in blocks() if '__name__ == "__main__"' in b]
        assert tour and programs
        for i, code in enumerate(["\n".join(tour), *programs]):
            script = tmp_path / f"readme_{i}.py"
            script.write_text(code)
            result = subprocess.run(
                [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False
            )
            assert result.returncode == 0, f"README program {i} failed:\n{result.stderr[-3000:]}"
            assert "Traceback" not in result.stderr, result.stderr[-3000:]
    finally:
        server.close()
        for name in find_segments():
            if tag in name:
                remove_if_stale(name)
    assert not [name for name in find_segments() if tag in name]  # the README leaves nothing behind
