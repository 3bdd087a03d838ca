"""The shell that runs on hosts lives in provision/scripts/*.sh: each one parses, passes
shellcheck, and ships with the package."""

from __future__ import annotations

import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from provision.ssh import script, script_command

SCRIPTS = sorted(Path(str(resources.files("provision").joinpath("scripts"))).glob("*.sh"))


def test_there_are_scripts_and_the_package_ships_them():
    assert len(SCRIPTS) >= 10
    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert '"scripts/*.sh"' in pyproject  # package data: `pip install .` carries them


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_each_script_parses_as_posix_sh(path):
    done = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_each_script_passes_shellcheck(path):
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed (apt-get install shellcheck; scripts/test.sh does it)")
    done = subprocess.run(["shellcheck", "-s", "sh", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_a_script_gets_its_values_as_arguments_never_spliced_into_its_text(tmp_path):
    """A value with quotes and spaces arrives as one argument, exactly."""
    (tmp_path / "digest").write_text("")
    odd = "it's a \"course\" $(touch pwned)"
    done = subprocess.run(["sh", "-c", script_command("exercises_record.sh", str(tmp_path), odd)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "digest").read_text() == odd + "\n"
    assert not (tmp_path / "pwned").exists()
    assert script("exercises_record.sh") in script_command("exercises_record.sh").replace("'\"'\"'", "'")
