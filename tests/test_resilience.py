"""One host's failure never stops the others, and the next `up` repairs it."""

from __future__ import annotations

import contextlib
import json

import docker.errors
import pytest
from conftest import TINY_IMAGE, Cli, free_port_base, remove_classroom_resources, unique_name, write_classroom_file

pytestmark = pytest.mark.engine


def test_a_host_that_cannot_be_created_is_reported_and_the_next_up_makes_it(engine, tiny_image, tmp_path):
    name = unique_name("t-res")
    write_classroom_file(tmp_path, name, students=3, port_base=free_port_base(4))
    cli = Cli(tmp_path / "home", cwd=tmp_path)
    # Something else already holds the container name student-02 needs (not ours: no label).
    squatter = engine.containers.create(TINY_IMAGE, ["sleep", "1"], name=f"classroom-{name}-student-02")
    try:
        run = cli("up")
        assert run.exit_code == 3, run
        assert "student-02" in run.stderr and "student-01" not in run.stderr
        rows = {line.split()[1]: line for line in run.stdout.splitlines() if line.startswith("│ student-")}
        assert "ready" in rows["student-01"] and "ready" in rows["student-03"]
        assert "failed" in rows["student-02"] and "Conflict" in rows["student-02"]
        squatter.remove(force=True)
        run = cli("up")
        assert run.exit_code == 0, run
        hosts = json.loads(cli("status", "--json").stdout)["hosts"]
        assert [(h["name"], h["state"]) for h in hosts] == [
            ("student-01", "ready"), ("student-02", "ready"), ("student-03", "ready")]
    finally:
        cli("down", "--yes")
        remove_classroom_resources(engine, name)
        with contextlib.suppress(docker.errors.NotFound):
            squatter.remove(force=True)
