"""The classroom file: the design's example reads as written, options override it, paths are
relative to the file, and every bad value is one `BadInput` line that names the field.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from conftest import REPO
from provision.config import ClassroomConfig, load_config
from provision.errors import BadInput, ExitCode

DESIGN_EXAMPLE = """\
name: docker-intro
backend: local            # local | aws
students: 30
images:                   # preloaded on every host
  - alpine:3.4
  - nginx:1.10-alpine
  - name: docker-intro/vote:1   # built from the course folder, then pushed
    build: ./images/vote
exercises: ./exercises    # a folder, copied to ~/exercises of every student (relative to this file)
swarm:
  nodes: 3                # 0: no Swarm cluster
sheets:
  lang: fr                # en | fr
local:
  public_host: 127.0.0.1  # the address printed on sheets
  ssh_port_base: 2200     # student-01 -> 2201
aws:
  region: eu-west-3
  instance_type: t3.small
  allowed_cidr: 0.0.0.0/0
ttl: 8h                   # cloud hosts power themselves off and terminate after this
"""


def write(folder: Path, text: str, name: str = "classroom.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def test_the_design_example_reads_as_written(tmp_path):
    config = load_config(write(tmp_path, DESIGN_EXAMPLE))
    assert config.name == "docker-intro" and config.backend == "local" and config.students == 30
    assert [i.name for i in config.images] == ["alpine:3.4", "nginx:1.10-alpine", "docker-intro/vote:1"]
    assert config.image_build_dir(config.images[2]) == (tmp_path / "images" / "vote").resolve()
    assert config.image_build_dir(config.images[0]) is None
    assert config.exercises_dir == (tmp_path / "exercises").resolve()
    assert config.swarm.nodes == 3 and config.sheets.lang == "fr"
    assert config.local.public_host == "127.0.0.1" and config.local.ssh_port_base == 2200
    assert config.aws.region == "eu-west-3" and config.aws.instance_type == "t3.small"
    assert config.ttl_delta == timedelta(hours=8)


def test_the_design_example_checks_its_folders(tmp_path):
    path = write(tmp_path, DESIGN_EXAMPLE)
    with pytest.raises(BadInput, match=r"exercises: no such folder"):
        load_config(path, check_paths=True)
    (tmp_path / "exercises").mkdir()
    with pytest.raises(BadInput, match=r"images\.2\.build: no Dockerfile in"):
        load_config(path, check_paths=True)
    (tmp_path / "images" / "vote").mkdir(parents=True)
    (tmp_path / "images" / "vote" / "Dockerfile").write_text("FROM scratch\n")
    assert load_config(path, check_paths=True).students == 30


def test_the_example_course_is_valid_and_complete():
    path = REPO / "examples" / "docker-intro" / "classroom.yaml"
    config = load_config(path, check_paths=True)
    assert config.name == "docker-intro" and config.students == 3
    course_images = ["debian:bookworm-slim", "docker-intro/web:1", "docker-intro/redis:1", "docker-intro/postgres:1",
                     "docker-intro/vote:1"]
    slide_images = ["alpine:3.4", "nginx:1.10-alpine", "redis", "redis:alpine", "postgres", "debian:jessie"]
    assert [i.name for i in config.images] == course_images + slide_images
    # Every image an exercise names is preloaded (the slides' ones too, in this variant).
    named = exercise_image_names(config.exercises_dir)
    assert named and named <= set(course_images), named
    vote = next(i for i in config.images if i.name == "docker-intro/vote:1")
    assert (config.image_build_dir(vote) / "Dockerfile").read_text().count("FROM debian:bookworm-slim") == 1
    assert config.swarm.nodes == 3 and config.sheets.lang == "fr"
    exercises = config.exercises_dir
    assert (exercises / "02-dockerfile" / "web" / "Dockerfile").read_text().startswith("FROM debian:bookworm-slim\n")
    compose = (exercises / "04-compose" / "docker-compose.yml").read_text()
    assert 'version: "2"' in compose and "build: ./vote" in compose and '"5000:80"' in compose
    assert "image: docker-intro/redis:1" in compose and "image: docker-intro/vote:1" in compose
    assert (exercises / "04-compose" / "vote" / "Dockerfile").is_file()
    chapters = sorted(p.parent.name for p in exercises.glob("*/README.md"))
    assert len(chapters) >= 4
    for chapter in chapters:
        assert (exercises / chapter / "README.md").read_text(encoding="utf-8").lstrip().startswith("#")


def test_the_offline_example_builds_every_image_from_the_course():
    config = load_config(REPO / "examples" / "docker-intro" / "classroom.offline.yaml", check_paths=True)
    base, *built = config.images
    assert base.name == "debian:bookworm-slim" and base.build is None  # scripts/setup-engine.sh makes it offline
    assert built and all(image.build is not None for image in built)
    for image in built:  # all on that base image
        assert "FROM debian:bookworm-slim" in (config.image_build_dir(image) / "Dockerfile").read_text()
    # Every image an exercise names is one of these: none needs a registry.
    named = exercise_image_names(config.exercises_dir)
    assert named == {image.name for image in config.images}, named
    assert config.solutions_dir is not None
    assert sorted(p.parent.name for p in config.solutions_dir.glob("*/solution.sh")) == sorted(
        p.parent.name for p in config.exercises_dir.glob("*/README.md"))


def exercise_image_names(folder) -> set[str]:
    """The images the exercises' commands, Dockerfiles and compose files name."""
    import re

    found = set()
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix in (".md", ".yml", "") and path.name != "app.py":
            text = path.read_text(encoding="utf-8")
            if path.name == "README.md" and path.parent == folder:
                continue  # the table of slide images and their replacements
            found |= set(re.findall(r"\b(docker-intro/[a-z]+:\d+|debian:[a-z-]+|alpine:[\w.]+|nginx:[\w.-]+|"
                                    r"redis:[\w.-]+|postgres:[\w.-]+)", text))
    return found


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(None)
    assert config.name == "classroom" and config.backend == "local" and config.students == 3
    assert config.images == [] and config.exercises is None
    assert config.local.ssh_port_base == 2200 and config.sheets.lang == "en"
    assert config.ttl == "8h"


def test_the_default_file_is_read_from_the_current_folder(tmp_path, monkeypatch):
    write(tmp_path, "name: here\nstudents: 4\n")
    monkeypatch.chdir(tmp_path)
    config = load_config(None)
    assert (config.name, config.students) == ("here", 4)


def test_an_empty_file_is_a_mistake_not_all_defaults(tmp_path):
    # It used to make the default 3 students and 3 Swarm nodes silently (issue 8).
    for text in ("", "# name: course\n"):
        with pytest.raises(BadInput, match="is empty: write the classroom's settings in it"):
            load_config(write(tmp_path, text))


def test_options_override_the_file(tmp_path):
    path = write(tmp_path, "name: course\nstudents: 4\nswarm:\n  nodes: 3\n  managers: 1\n")
    config = load_config(path, {"--students": 12, "--swarm-nodes": 0, "--backend": "aws", "--name": "other"})
    assert (config.students, config.swarm.nodes, config.backend, config.name) == (12, 0, "aws", "other")
    assert config.swarm.managers == 1  # the rest of the section is kept
    unchanged = load_config(path, {"--students": None, "--name": None})
    assert (unchanged.students, unchanged.name) == (4, "course")


def test_an_override_error_names_the_option_not_the_field(tmp_path):
    path = write(tmp_path, "name: course\n")
    with pytest.raises(BadInput) as caught:
        load_config(path, {"--swarm-nodes": 12})
    assert caught.value.message == "--swarm-nodes: must be at most 9 (got 12)"
    assert caught.value.exit_code == ExitCode.BAD_INPUT


@pytest.mark.parametrize(("text", "message"), [
    ("students: 0\n", "students: must be at least 1 (got 0)"),
    ("students: 3.5\n", "students: must be a whole number"),
    ("backend: gcp\n", "backend: must be 'local' or 'aws' (got 'gcp')"),
    ("images: alpine\n", "images: must be a valid list (got 'alpine')"),
    ("images:\n  - name: alpine\n    pull: always\n", "images.0.pull: unknown setting"),
    ("swarm:\n  nodes: 3\n  managers: 2\n", "swarm: managers must be an odd number, at most nodes (3)"),
    ("swarm: 3\n", "swarm: must be a valid dictionary or instance of SwarmConfig (got 3)"),
    ("local:\n  public_host: 'a b'\n", "local.public_host: 'a b' is not a host name or address"),
    ("local:\n  ssh_port_base: 70000\n", "local.ssh_port_base: must be at most 60000 (got 70000)"),
    ("ttl: 8 hours\n", "ttl: '8 hours' is not a duration like 90m, 8h or 2d"),
    ("preload:\n  registry_mirror: mirror:5000\n", "preload.registry_mirror: 'mirror:5000' is not a registry "
                                                   "mirror URL like http://mirror.lan:5000"),
    ("aws:\n  registry_mirror: http://m:5000/v2\n", "aws.registry_mirror: 'http://m:5000/v2' is not a "
                                                    "registry mirror URL"),
    ("name: ''\n", "name: '' is not a valid classroom name (lowercase letters, digits and '-', at most 40)"),
    ("name: " + "a" * 41 + "\n", "name: '" + "a" * 41 + "' is not a valid classroom name "
                                 "(lowercase letters, digits and '-', at most 40)"),
])
def test_a_bad_value_is_one_line_naming_the_field(tmp_path, text, message):
    path = write(tmp_path, text, "c.yaml")
    with pytest.raises(BadInput) as caught:
        load_config(path)
    assert caught.value.message.startswith(f"{path}: {message}")
    assert "\n" not in caught.value.message


@pytest.mark.parametrize("ttl,delta", [("90m", timedelta(minutes=90)), ("8h", timedelta(hours=8)),
                                       ("2d", timedelta(days=2)), (" 3h ", timedelta(hours=3))])
def test_ttl_durations(ttl, delta):
    assert ClassroomConfig(ttl=ttl).ttl_delta == delta


@pytest.mark.parametrize("image", ["alpine", "alpine:3.4", "nginx:1.10-alpine", "docker-intro/vote:1",
                                   "localhost:5000/course/web:1.0.0", "registry.example.com/a/b_c:latest",
                                   "redis@sha256:" + "0" * 64])
def test_valid_image_names(image):
    assert ClassroomConfig(images=[image]).images[0].name == image


@pytest.mark.parametrize("image", ["Alpine", "alpine:", "a b", "-alpine", "alpine:3.4:5", "course/Web:1"])
def test_invalid_image_names(image, tmp_path):
    with pytest.raises(BadInput, match=r"images\.0\.name: .* is not a valid image name"):
        load_config(write(tmp_path, f"images:\n  - {image!r}\n"))



@pytest.mark.parametrize("url", ["ftp://m:5000", "http://", "http://u:p@m:5000", "http://m:99999",
                                 "http://m:x", "http://m:5000?x=1", "https://m/path"])
def test_invalid_registry_mirrors(url, tmp_path):
    with pytest.raises(BadInput, match=r"preload\.registry_mirror: .* is not a registry mirror URL"):
        load_config(write(tmp_path, f"preload:\n  registry_mirror: {url!r}\n"))


def test_registry_mirror_preload_first_then_aws_on_aws_only():
    from provision.config import docker_daemon_config

    both = ClassroomConfig.model_validate({"backend": "aws", "preload": {"registry_mirror": "https://hub.lan/"},
                                           "aws": {"registry_mirror": "http://old:5000"}})
    assert both.registry_mirror == "https://hub.lan"
    assert ClassroomConfig(backend="aws", aws={"registry_mirror": "http://old:5000"}).registry_mirror == "http://old:5000"
    assert ClassroomConfig(backend="local", aws={"registry_mirror": "http://old:5000"}).registry_mirror is None
    assert ClassroomConfig(preload={"registry_mirror": "http://m:5000"}).registry_mirror == "http://m:5000"
    assert docker_daemon_config("http://m:5000") == {"registry-mirrors": ["http://m:5000"],
                                                     "insecure-registries": ["m:5000"]}
    assert docker_daemon_config("https://hub.lan") == {"registry-mirrors": ["https://hub.lan"]}


# --- issue 9: ports, aws timeouts, registry_auth ----------------------------------------------------------
def test_ports_default_and_ranges(tmp_path):
    from provision.config import DEFAULT_PORTS

    assert load_config(write(tmp_path, "name: x\n")).port_ranges == [(80, 80), (5000, 5000), (8000, 8010)]
    assert DEFAULT_PORTS == [80, 5000, "8000-8010"]
    config = load_config(write(tmp_path, 'ports: ["9000-9005", 443, "8080"]\n'))
    assert config.port_ranges == [(443, 443), (8080, 8080), (9000, 9005)]
    assert load_config(write(tmp_path, "ports: []\n")).port_ranges == []


@pytest.mark.parametrize(("text", "message"), [
    ("ports: 80\n", "ports: must be a list of ports like [80, 5000, \"8000-8010\"]"),
    ("ports: [80, 80]\n", "ports: 80 is listed twice (got [80, 80])"),
    ("ports: [\"8000-8010\", 8005]\n",
     "ports: 8000-8010 and 8005 overlap (each port once) (got ['8000-8010', 8005])"),
    ("ports: [\"90-80\"]\n", "ports: '90-80': a range goes from low to high, like \"80-90\" (got ['90-80'])"),
    ("ports: [0]\n", "ports: 0: ports are 1 to 65535 (got [0])"),
    ("ports: [true]\n", "ports: True is not a port or a range like \"8000-8010\" (got [True])"),
    ("aws:\n  ssh_timeout: soon\n", "aws.ssh_timeout: 'soon' is not a duration like 90m, 8h or 2d"),
    ("aws:\n  cloud_init_timeout: 0m\n", "aws.cloud_init_timeout: '0m' is not a duration like 90m, 8h or 2d"),
    ("aws:\n  ephemeral_ports: maybe\n",
     "aws.ephemeral_ports: must be a valid boolean, unable to interpret input (got 'maybe')"),
    ("registry_auth: trainer:dckr_pat_x\n", "registry_auth: must name an environment variable (like "
     "CLASSROOM_REGISTRY_AUTH) that holds user:token, never the credentials themselves (got 'trainer:dckr_pat_x')"),
])
def test_issue_9_settings_are_checked_in_one_line(tmp_path, text, message):
    with pytest.raises(BadInput) as caught:
        load_config(write(tmp_path, text))
    assert str(caught.value).split(": ", 1)[1] == message
