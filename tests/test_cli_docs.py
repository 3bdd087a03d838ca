"""Every command is documented: in README.md with an example, and by its own --help."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from conftest import REPO
from provision.cli import app

README = REPO / "README.md"
GLOBAL_OPTIONS_WITH_VALUE = {"-f", "--file", "--name"}
GLOBAL_FLAGS = {"--debug"}
HEAVY_MODULES = ("docker", "fabric", "paramiko", "pulumi", "pulumi_aws", "boto3", "jinja2")


def commands() -> dict[str, object]:
    return dict(typer.main.get_command(app).commands)


COMMANDS = sorted(commands())


def readme_examples() -> dict[str, list[str]]:
    """command -> the `classroom ...` lines of README's code blocks that run it."""
    text = README.read_text(encoding="utf-8")
    found: dict[str, list[str]] = {}
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            if not line.startswith("classroom "):
                continue
            try:
                words = shlex.split(line, comments=True)[1:]
            except ValueError:
                continue
            while words and (words[0] in GLOBAL_FLAGS or words[0] in GLOBAL_OPTIONS_WITH_VALUE):
                words = words[2:] if words[0] in GLOBAL_OPTIONS_WITH_VALUE else words[1:]
            if words:
                found.setdefault(words[0], []).append(line)
    return found


def test_there_are_commands():
    assert {"up", "status", "roster", "sheets", "down"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_an_example_in_the_readme(command):
    examples = readme_examples()
    assert examples.get(command), f"README.md has no example of `classroom {command}` in a code block"
    assert f"`{command}`" in README.read_text(encoding="utf-8") or f"### {command}" in README.read_text(
        encoding="utf-8"), f"README.md does not name `{command}` outside its examples"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_a_help(command, cli):
    assert (commands()[command].help or "").strip(), f"`classroom {command}` has no docstring"
    run = cli(command, "--help")
    assert run.exit_code == 0, run
    assert f"Usage: classroom {command}" in run.stdout
    first_line = commands()[command].help.strip().splitlines()[0]
    assert " ".join(first_line.split()[:4]) in " ".join(run.stdout.split())


def test_classroom_help_runs_and_lists_every_command(cli):
    run = cli("--help", subprocess=True)
    assert run.exit_code == 0, run
    assert "Usage: classroom" in run.stdout
    for command in COMMANDS:
        assert re.search(rf"\b{re.escape(command)}\b", run.stdout), command
    assert run.stderr == ""


def test_short_help_option_works(cli):
    run = cli("-h")
    assert run.exit_code == 0 and "Usage: classroom" in run.stdout


def test_help_imports_no_heavy_library():
    """`classroom --help` stays fast: Docker, Fabric, Pulumi and Jinja2 load only where needed."""
    probe = (
        "import sys\n"
        "from provision import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1:] in ([], [""]), f"imported by --help: {done.stderr.strip()}"


def test_the_console_script_is_the_cli_main():
    text = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^classroom\s*=\s*"provision\.cli:main"', text, flags=re.M)


def test_readme_opens_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    head = text[: text.find("\n## ")] if "\n## " in text else text
    assert "bash scripts/demo.sh" in head and "bash scripts/test.sh" in head
    assert Path(REPO / "scripts" / "demo.sh").is_file() and Path(REPO / "scripts" / "test.sh").is_file()
