"""The classroom file (docs/design.md), as a Pydantic model, with command-line overrides.

Every invalid field is reported as one line naming the field, as a `BadInput` (exit 2), before
anything is created.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stacks import parse_duration

from .errors import BadInput
from .model import Strategy
from .workers import PARALLEL

DEFAULT_FILE = Path("classroom.yaml")
DEFAULT_NAME = "classroom"
MAX_STUDENTS = 200

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
# A Docker image reference: [registry[:port]/]path[:tag][@digest], lowercase path components.
IMAGE_RE = re.compile(
    r"^(?:(?:localhost|[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+|[a-zA-Z0-9.-]+:[0-9]+)/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
SETTING_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,39}$")  # what a setting's name looks like
# Counts are YAML integers only: `students: true` (a bool is an int to Python), 2.5 or "3" is a mistake.
Count = Annotated[int, Field(strict=True)]
# What students publish with `-p` in the course (80, 5000 for Compose, 8000 for nginx): on aws
# the security group opens exactly these, plus 22.
DEFAULT_PORTS: list[int | str] = [80, 5000, "8000-8010"]
PORT_RANGE_RE = re.compile(r"^(\d{1,5})\s*-\s*(\d{1,5})$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_REGISTRY_AUTH_ENV = "CLASSROOM_REGISTRY_AUTH"


def parse_ports(value: Any) -> list[tuple[int, int]]:
    """The `ports:` list (ints, or "A-B" ranges) as sorted (low, high) ranges; ValueError naming
    the item for a bad port, a reversed range, a duplicate or an overlap."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError("must be a list of ports like [80, 5000, \"8000-8010\"]")
    ranges = []
    for item in value:
        if isinstance(item, bool):
            raise ValueError(f"{item!r} is not a port or a range like \"8000-8010\"")
        if isinstance(item, int) or (isinstance(item, str) and item.strip().isdigit()):
            low = high = int(item)
        else:
            match = PORT_RANGE_RE.match(str(item).strip())
            if not match:
                raise ValueError(f"{item!r} is not a port or a range like \"8000-8010\"")
            low, high = int(match.group(1)), int(match.group(2))
        if not (1 <= low <= 65535 and 1 <= high <= 65535):
            raise ValueError(f"{item!r}: ports are 1 to 65535")
        if low > high:
            raise ValueError(f"{item!r}: a range goes from low to high, like \"{high}-{low}\"")
        ranges.append((low, high))
    ranges.sort()
    for (low1, high1), (low2, high2) in itertools.pairwise(ranges):
        if (low1, high1) == (low2, high2):
            raise ValueError(f"{low1 if low1 == high1 else f'{low1}-{high1}'} is listed twice")
        if low2 <= high1:
            first = str(low1) if low1 == high1 else f"{low1}-{high1}"
            second = str(low2) if low2 == high2 else f"{low2}-{high2}"
            raise ValueError(f"{first} and {second} overlap (each port once)")
    return ranges


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageSpec(_Strict):
    """A course image: taken as is (`name`), or built from a folder of the course (`build`)."""

    name: str
    build: Path | None = None

    @field_validator("name")
    @classmethod
    def _valid_reference(cls, value: str) -> str:
        if not IMAGE_RE.match(value):
            raise ValueError(f"{value!r} is not a valid image name")
        return value


class SwarmConfig(_Strict):
    # Nodes per cluster. per-student: each student's own cluster, their host being node 1 (so 3 is
    # the host and two more machines); shared: swarm-1 … swarm-N, every student root on them.
    nodes: Annotated[Count, Field(ge=0, le=9)] = 3
    managers: Annotated[Count, Field(ge=1)] = 1
    mode: Literal["per-student", "shared"] = "per-student"
    # false: blank engines the students form into a cluster themselves (the `swarm init` lab).
    formed: bool = True

    @property
    def per_student(self) -> bool:
        return self.mode == "per-student"

    @property
    def own_nodes(self) -> int:
        """How many machines each student's own cluster has, their host included (1: none)."""
        return max(self.nodes, 1) if self.per_student else 1

    @model_validator(mode="after")
    def _managers_fit(self) -> SwarmConfig:
        if self.nodes and (self.managers % 2 == 0 or self.managers > self.nodes):
            raise ValueError(f"managers must be an odd number, at most nodes ({self.nodes})")
        return self


class SheetsConfig(_Strict):
    lang: Literal["en", "fr"] = "en"


class WebConfig(_Strict):
    """`classroom web`: students may claim a free seat with the class code (`self_service`);
    with a certificate and its key, it serves HTTPS."""

    self_service: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> WebConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both, or neither")
        return self


SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmg]?)b?$", re.IGNORECASE)
SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def byte_size(value: Any, minimum: str) -> str:
    """A size as Docker writes it (`512m`, `2g`), checked and kept as typed; at least `minimum`."""
    text = str(value).strip().lower()
    size = size_in_bytes(text)
    if size is None:
        raise ValueError(f"{text!r} is not a size like 512m or 2g")
    if size < size_in_bytes(minimum):  # type: ignore[operator]
        raise ValueError(f"must be at least {minimum} (got {text!r})")
    return text


def size_in_bytes(text: str) -> int | None:
    match = SIZE_RE.match(text.strip())
    return None if not match else int(float(match.group(1)) * SIZE_UNITS[match.group(2).lower()])


class LocalLimits(_Strict):
    """What one local host may use of this machine; `null` lifts a limit. Students' nested
    containers count against their host's limits, so one student cannot starve the others."""

    memory: str | None = "2g"  # RAM of the host and everything it runs (swap: as much again)
    pids: Annotated[int, Field(ge=64)] | None = 2048  # processes and threads: stops a fork bomb
    cpus: Annotated[float, Field(gt=0, le=256)] | None = 2  # at most the engine's CPUs
    tmp: str | None = "1g"  # /tmp, RAM-backed (tmpfs): counts against memory
    run: str | None = "256m"  # /run, RAM-backed: the nested engine's runtime state

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, value: Any) -> str | None:
        return None if value is None else byte_size(value, "256m")  # dockerd + sshd need ~100 MB

    @field_validator("tmp", "run", mode="before")
    @classmethod
    def _tmpfs(cls, value: Any) -> str | None:
        return None if value is None else byte_size(value, "16m")


# The engine's own runtimes: they add no isolation, and DinD under them needs added capabilities.
PLAIN_RUNTIMES = ("runc", "io.containerd.runc.v2", "io.containerd.runtime.v1.linux")


class LocalConfig(_Strict):
    # The address printed on sheets, where students reach their host's sshd and published ports.
    # None: this machine's address on its default route (hostaddr.py), read when first asked.
    public_host: str | None = None
    ssh_port_base: Annotated[Count, Field(ge=1024, le=60000)] = 2200
    limits: LocalLimits = LocalLimits()
    # An OCI runtime that isolates Docker-in-Docker without added privileges, e.g. sysbox-runc.
    runtime: str | None = None

    @field_validator("runtime")
    @classmethod
    def _runtime(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", value):
            raise ValueError(f"{value!r} is not a runtime name like sysbox-runc")
        if value in PLAIN_RUNTIMES:
            raise ValueError(f"{value!r} is the engine's default runtime and isolates nothing: "
                             "leave local.runtime out, or name one like sysbox-runc")
        return value

    @field_validator("public_host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Za-z0-9.:-]+$", value):
            raise ValueError(f"{value!r} is not a host name or address")
        return value

    @property
    def address(self) -> str:
        """`public_host`, else this machine's address on its default route, else loopback."""
        if self.public_host is not None:
            return self.public_host
        from .hostaddr import default_route_address

        return default_route_address() or "127.0.0.1"


def mirror_url(value: str | None) -> str | None:
    """A Docker Hub mirror as dockerd accepts it in `registry-mirrors`: http(s)://host[:port],
    no path, query or credentials (dockerd refuses to start otherwise, on every host)."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        url = urlsplit(text)
        valid = (url.scheme in ("http", "https") and bool(url.hostname) and url.path in ("", "/")
                 and not (url.query or url.fragment or "@" in url.netloc)
                 and (url.port is None or url.port > 0)  # .port raises on a bad one
                 and not any(c.isspace() for c in text))
    except ValueError:
        valid = False
    if not valid:
        raise ValueError(f"{text!r} is not a registry mirror URL like http://mirror.lan:5000 "
                         "(http or https, a host, an optional port, nothing after)")
    return text.rstrip("/")


def docker_daemon_config(mirror: str) -> dict[str, Any]:
    """The hosts' /etc/docker/daemon.json for a mirror. An http mirror is also listed as an
    insecure registry, so that `docker pull host:port/image` straight from it works too."""
    config: dict[str, Any] = {"registry-mirrors": [mirror]}
    url = urlsplit(mirror)
    if url.scheme == "http":
        config["insecure-registries"] = [url.netloc]
    return config


class PreloadConfig(_Strict):
    # push: the instructor's engine sends its images (default on local); pull: each host pulls
    # for itself (default on aws).
    strategy: Strategy | None = None
    parallel: Annotated[Count, Field(ge=1, le=64)] = PARALLEL  # hosts worked on at once (workers.py)
    # Docker Hub pull-through mirror, written into each new host's daemon.json (any strategy, any
    # backend: students' own pulls use it too). Hosts made before a change keep their old setting
    # until they are replaced (`reset --hard`) or the classroom is made anew.
    registry_mirror: str | None = None

    @field_validator("registry_mirror", mode="before")
    @classmethod
    def _mirror(cls, value: Any) -> str | None:
        return mirror_url(value)


class AwsConfig(_Strict):
    region: str = "eu-west-3"
    instance_type: str = "t3.small"
    allowed_cidr: str = "0.0.0.0/0"
    registry_mirror: str | None = None  # older spelling of preload.registry_mirror, aws only
    # `docker run -P` picks from 32768-60999: open that range only when the course wants it.
    ephemeral_ports: bool = False
    # A fresh t3.small takes a minute or two before sshd answers, then installs Docker CE (and
    # upgrades packages) for several more: sized for real boots, not for containers.
    ssh_timeout: str = "10m"
    cloud_init_timeout: str = "25m"

    @field_validator("registry_mirror", mode="before")
    @classmethod
    def _mirror(cls, value: Any) -> str | None:
        return mirror_url(value)

    @field_validator("ssh_timeout", "cloud_init_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> str:
        parse_duration(value)
        return str(value).strip()

    @property
    def ssh_seconds(self) -> float:
        return parse_duration(self.ssh_timeout).total_seconds()

    @property
    def cloud_init_seconds(self) -> float:
        return parse_duration(self.cloud_init_timeout).total_seconds()


class ClassroomConfig(_Strict):
    name: str = DEFAULT_NAME
    backend: Literal["local", "aws"] = "local"
    students: Annotated[Count, Field(ge=1, le=MAX_STUDENTS)] = 3
    images: list[ImageSpec] = []
    exercises: Path | None = None
    # NN-name/check.sh, run as each student for `progress`: never copied to students.
    checks: Path | None = None
    web: WebConfig = WebConfig()
    # `NN-name/solution.sh` per exercise, run by `classroom rehearse`; never copied to students.
    solutions: Path | None = None
    swarm: SwarmConfig = SwarmConfig()
    sheets: SheetsConfig = SheetsConfig()
    preload: PreloadConfig = PreloadConfig()
    local: LocalConfig = LocalConfig()
    aws: AwsConfig = AwsConfig()
    ttl: str = "8h"
    ports: list[int | str] = Field(default_factory=lambda: list(DEFAULT_PORTS))
    # The name of the environment variable holding Docker Hub credentials (`user:token`) for the
    # hosts' pulls; never the credentials themselves (the file is shared, the state is kept).
    registry_auth: str = DEFAULT_REGISTRY_AUTH_ENV
    # The class's time zone, for the times on sheets (None: this machine's, timezones.py).
    timezone: str | None = None
    # Whether students may `sudo` on their own host with their own password (never on Swarm nodes).
    students_sudo: Annotated[bool, Field(strict=True)] = True
    # Where the file was read from: relative paths (exercises, image builds) are relative to it.
    base_dir: Path = Field(default=Path("."), exclude=True)
    # The file itself and a digest of its bytes (None: built-in defaults): `up` records them, and
    # the commands that need the course refuse another one rather than guess.
    source: Path | None = Field(default=None, exclude=True)
    source_digest: str | None = Field(default=None, exclude=True)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(
                f"{value!r} is not a valid classroom name (lowercase letters, digits and '-', at most 40)"
            )
        return value

    @field_validator("images", mode="before")
    @classmethod
    def _plain_names(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, list):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("ttl", mode="before")
    @classmethod
    def _valid_ttl(cls, value: Any) -> str:
        parse_duration(value)
        return str(value).strip()

    @field_validator("ports", mode="before")
    @classmethod
    def _valid_ports(cls, value: Any) -> Any:
        parse_ports(value)
        return [] if value is None else value

    @field_validator("timezone", mode="before")
    @classmethod
    def _zone(cls, value: Any) -> str | None:
        from .timezones import check_zone

        return None if value is None else check_zone(str(value).strip())

    @model_validator(mode="after")
    def _local_ports_fit(self) -> ClassroomConfig:
        from .ports import local_ports_problem

        if self.backend == "local":
            problem = local_ports_problem(self.local.ssh_port_base, self.port_ranges, self.students,
                                          self.swarm.own_nodes)
            if problem:
                raise ValueError(problem)
        return self

    @field_validator("registry_auth", mode="before")
    @classmethod
    def _env_name(cls, value: Any) -> str:
        text = str(value).strip()
        if not ENV_NAME_RE.match(text):
            raise ValueError("must name an environment variable (like CLASSROOM_REGISTRY_AUTH) that holds "
                             "user:token, never the credentials themselves")
        return text

    @property
    def port_ranges(self) -> list[tuple[int, int]]:
        """`ports:` as sorted, non-overlapping (low, high) ranges (a single port is (p, p))."""
        return parse_ports(self.ports)

    @property
    def ttl_delta(self) -> timedelta:
        return parse_duration(self.ttl)

    @property
    def registry_mirror(self) -> str | None:
        """The hosts' Docker Hub mirror: preload.registry_mirror, else (on aws) aws.registry_mirror."""
        if self.preload.registry_mirror:
            return self.preload.registry_mirror
        return self.aws.registry_mirror if self.backend == "aws" else None

    @property
    def exercises_dir(self) -> Path | None:
        return None if self.exercises is None else (self.base_dir / self.exercises).resolve()

    @property
    def checks_dir(self) -> Path | None:
        return None if self.checks is None else (self.base_dir / self.checks).resolve()

    def web_path(self, path: Path | None) -> Path | None:
        """A `web.tls_*` file, relative to the classroom file."""
        return None if path is None else (self.base_dir / path).resolve()

    @property
    def solutions_dir(self) -> Path | None:
        return None if self.solutions is None else (self.base_dir / self.solutions).resolve()

    def image_build_dir(self, image: ImageSpec) -> Path | None:
        return None if image.build is None else (self.base_dir / image.build).resolve()



# Command-line option -> the field it overrides, so errors name what the trainer typed.
OPTION_FIELDS = {"--students": ("students",), "--swarm-nodes": ("swarm", "nodes"),
                 "--backend": ("backend",), "--name": ("name",)}


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None,
                *, check_paths: bool = False) -> ClassroomConfig:
    """Read the classroom file (or defaults when the default file is absent) and apply overrides.

    `path=None` means `./classroom.yaml` if present. `overrides` maps option names of
    OPTION_FIELDS (`--students`) to values; `None` values are ignored.
    """
    explicit = path is not None
    path = Path(path) if explicit else DEFAULT_FILE
    data: dict[str, Any] = {}
    label = str(path)
    source = digest = None
    if path.is_dir():
        raise BadInput(f"{label}: is a folder, not a classroom file")
    if path.exists():
        try:
            raw = path.read_bytes()
            loaded = yaml.load(raw.decode("utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark else ""
            problem = getattr(exc, "problem", None) or "not valid YAML"
            raise BadInput(f"{label}: invalid YAML{where}: {problem}") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise BadInput(f"{label}: cannot be read: {reason}") from None
        if loaded is None:  # empty, or only comments: surely not meant as "all the defaults"
            raise BadInput(f"{label}: is empty: write the classroom's settings in it (name, students, images, ...)")
        if not isinstance(loaded, dict):
            raise BadInput(f"{label}: must be a mapping of settings (name, students, images, ...)")
        if not all(isinstance(key, str) and SETTING_RE.match(key) for key in loaded):
            # Never echo such a key: `-f /etc/shadow` would print a password hash.
            raise BadInput(f"{label}: is not a classroom file (its keys are not setting names)")
        data = loaded
        base_dir = path.resolve().parent
        source, digest = path.resolve(), hashlib.sha256(raw).hexdigest()
    elif explicit:
        raise BadInput(f"{label}: no such classroom file")
    else:
        base_dir = Path.cwd()
        label = "defaults"

    sources: dict[tuple[str, ...], str] = {}
    for option, value in (overrides or {}).items():
        if value is None:
            continue
        keys = OPTION_FIELDS[option]
        target = data
        for key in keys[:-1]:
            target = target.setdefault(key, {}) if isinstance(target.get(key, {}), dict) else {}
        target[keys[-1]] = value
        sources[keys] = option

    try:
        config = ClassroomConfig.model_validate({**data, "base_dir": base_dir, "source": source,
                                                  "source_digest": digest})
    except ValidationError as exc:
        raise BadInput(_one_line(exc, label, sources)) from None
    if check_paths:
        check_course_paths(config, label)
    return config


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key given twice is an error: YAML keeps the last one
    silently, so `students: 30` above a forgotten `students: 3` would make 3 hosts."""

    def construct_mapping(self, node, deep=False):
        seen: set[Any] = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                shown = repr(key) if isinstance(key, str) and SETTING_RE.match(key) else "a key"
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate setting {shown}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def check_course_paths(config: ClassroomConfig, label: str = "classroom file") -> None:
    """The folders the course names must exist (a typo would otherwise surface mid-`up`) and stay
    inside the course: the exercises go to every student, and a build folder's files end up in
    an image every student gets. The tool runs as root, so `../../../etc/ssh` would be copied."""
    folder = config.exercises_dir
    if folder is not None:
        check_course_folder(config, folder, f"{label}: exercises")
        if not folder.is_dir():
            raise BadInput(f"{label}: exercises: no such folder: {folder}")
    check_checks_folder(config, label)
    for index, image in enumerate(config.images):
        build = config.image_build_dir(image)
        if build is not None:
            check_course_folder(config, build, f"{label}: images.{index}.build")
            if not (build / "Dockerfile").is_file():
                raise BadInput(f"{label}: images.{index}.build: no Dockerfile in {build}")


def check_checks_folder(config: ClassroomConfig, label: str) -> None:
    """The checks folder exists, stays in the course, and is apart from the exercises: what is
    inside the exercises folder reaches every student, and a check often gives the answer away."""
    checks, exercises = config.checks_dir, config.exercises_dir
    if checks is None:
        return
    check_course_folder(config, checks, f"{label}: checks")
    if not checks.is_dir():
        raise BadInput(f"{label}: checks: no such folder: {checks}")
    if exercises is not None and (checks.is_relative_to(exercises) or exercises.is_relative_to(checks)):
        raise BadInput(f"{label}: checks: {checks} and the exercises folder {exercises} overlap: the exercises "
                       "are copied to every student, the checks must not be")


def check_course_folder(config: ClassroomConfig, folder: Path, field: str) -> None:
    """`folder` (symlinks resolved) is inside the classroom file's folder, and neither holds nor
    lies inside the tool's own folders: the state (admin key, passwords) and the cache."""
    from .images import cache_dir
    from .state import state_root

    course = config.base_dir.resolve()
    if not folder.is_relative_to(course):
        raise BadInput(f"{field}: {folder} is outside the course folder {course} (the classroom file's "
                       "folder): keep what students get beside the classroom file")
    private = {"state folder": (state_root(), "keys, passwords"), "cache folder": (cache_dir().parent, "saved images")}
    for what, (path, holding) in private.items():
        path = path.expanduser().resolve()
        if path.is_relative_to(folder):
            raise BadInput(f"{field}: {folder} holds the classroom {what} {path} ({holding}): "
                           "name a folder with the course's files only")
        if folder.is_relative_to(path):
            raise BadInput(f"{field}: {folder} is inside the classroom {what} {path}: "
                           "name a folder of the course")


def _one_line(exc: ValidationError, label: str, sources: dict[tuple[str, ...], str]) -> str:
    error = exc.errors()[0]
    loc = tuple(str(part) for part in error["loc"])
    field = sources.get(loc) or ".".join(loc)
    message = _plain(error["msg"].removeprefix("Value error, "))
    if not field:  # a check of the whole file: its message names the fields itself
        return f"{label}: {message}"
    if error["type"] == "extra_forbidden":
        message = "unknown setting"
    elif ("input" in error and error["type"] not in ("missing",) and not isinstance(error["input"], dict)
          and repr(error["input"]) not in message):
        message = f"{message} (got {error['input']!r})"
    where = "" if field.startswith("--") else f"{label}: "
    return f"{where}{field}: {message}"


# Pydantic's wording, as a trainer would say it: "must be at least 1", not "Input should be ...".
_PLAIN = [
    ("Input should be a valid integer, unable to parse string as an integer", "must be a whole number"),
    ("Input should be a valid integer", "must be a whole number"),
    ("Input should be greater than or equal to", "must be at least"),
    ("Input should be less than or equal to", "must be at most"),
    ("Input should be", "must be"),
]


def _plain(message: str) -> str:
    for pydantic_words, plain in _PLAIN:
        if message.startswith(pydantic_words):
            return plain + message[len(pydantic_words):]
    return message
