"""The wheel `pip install .` builds (the Dockerfile's install) carries what an installed gateway reads at run time:
the simulator's scenarios and the built-in config and reply texts. Before, `smsgw simulate` from an installed
package ended in "file not found" for simulator/scenarios/default.toml."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "gateway", "handlers", "simulator", "config")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of the sources, so the build leaves nothing in the repository."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(source)], check=True, capture_output=True, timeout=120)  # fmt: skip
    (built,) = out.glob("smsgw-*.whl")
    return built


def test_the_wheel_carries_every_package_and_the_files_read_at_run_time(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = ("gateway", "handlers", "simulator")
    packages = {str(p.parent.relative_to(ROOT)) for top in tops for p in (ROOT / top).rglob("__init__.py")}
    assert {p for p in packages if f"{p}/__init__.py" not in names} == set()  # pyproject.toml lists them one by one
    scenarios = {f"simulator/scenarios/{p.name}" for p in (ROOT / "simulator" / "scenarios").glob("*.toml")}
    built_in = {f"gateway/defaults/{p.name}" for p in (ROOT / "config").glob("*.toml")}
    assert scenarios | built_in <= names and len(scenarios) >= 3 and len(built_in) == 3


def test_an_installed_gateway_serves_and_simulates_from_anywhere(wheel: Path, tmp_path: Path) -> None:
    """Installed without its source tree and run from an empty directory: the built-in config, reply texts and
    scenario are the ones in the package."""
    installed, elsewhere = tmp_path / "site-packages", tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(installed), str(wheel)],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(installed)}

    def python(*args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, *args], cwd=elsewhere, env=env, text=True, **kwargs)

    where = python("-c", "import gateway.config as c; print(c.DEFAULT_CONFIG)", stdout=subprocess.PIPE)
    assert where.communicate(timeout=30)[0].strip() == str(installed / "gateway" / "defaults" / "default.toml")
    server = python("-m", "gateway", "serve", "--db", str(tmp_path / "gw.db"), "--host", "127.0.0.1", "--smpp-port", "0",
                    "--http-port", "0", "--log-json", stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert server.stderr is not None
        ready = next((json.loads(line) for line in server.stderr if '"smsgw ready"' in line), None)
        assert ready is not None, "the installed gateway exited before it was ready"
        threading.Thread(target=server.stderr.read, daemon=True).start()  # its log must not fill the pipe
        simulate = python("-m", "gateway", "simulate", "--port", str(ready["smpp_port"]), "--count", "5", "--quiet",
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        out, err = simulate.communicate(timeout=60)
        assert simulate.returncode == 0, out + err
        assert "PASS" in out
    finally:
        server.terminate()
        server.communicate(timeout=30)
