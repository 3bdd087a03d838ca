"""Cloud-init user data for one host, rendered from `templates/cloud-init.yaml.j2`.

Only what stays true for the host's whole life goes in: its name and role, the admin key, its
own host key, the registry mirror and allowed_cidr it was made with. The expiry is not here (an
instance tag, read on the host over IMDSv2), so it can move without touching the host.
"""

from __future__ import annotations

import ipaddress
import json
from functools import cache

from . import VPC_CIDR, ClassroomSpec, HostEntry, templates_dir

TEMPLATE = "cloud-init.yaml.j2"
MAX_AUTH_TRIES = 5
USER_DATA_LIMIT = 16384  # bytes: EC2 refuses larger user data (before base64)


@cache
def template_text(name: str = TEMPLATE) -> str:
    """The template, from `templates_dir()`."""
    return (templates_dir() / name).read_text(encoding="utf-8")


def fail2ban_ignore(spec: ClassroomSpec) -> str:
    """Addresses fail2ban never bans: loopback, the hosts' own network, and allowed_cidr when it
    is the school's network rather than the whole Internet."""
    ignored = ["127.0.0.1/8", "::1", VPC_CIDR]
    network = ipaddress.ip_network(spec.allowed_cidr, strict=False)
    if network.prefixlen > 0:
        ignored.append(str(network))
    return " ".join(ignored)


def daemon_json(spec: ClassroomSpec) -> str | None:
    if not spec.registry_mirror:
        return None
    from provision.config import docker_daemon_config

    return json.dumps(docker_daemon_config(spec.registry_mirror))


@cache
def compiled(text: str):
    """The template compiled once per text: a program renders it for every host."""
    from jinja2 import Environment, StrictUndefined

    env = Environment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)
    return env.from_string(text)


def render_user_data(host: HostEntry, spec: ClassroomSpec) -> str:
    text = compiled(template_text()).render(
        classroom=spec.name,
        host=host,
        admin_public_key=spec.admin_public_key,
        host_key=spec.host_keys.get(host.name),
        daemon_json=daemon_json(spec),
        fail2ban_ignore=fail2ban_ignore(spec),
        max_auth_tries=MAX_AUTH_TRIES,
    )
    if len(text.encode()) > USER_DATA_LIMIT:
        raise ValueError(f"user data for {host.name} is {len(text.encode())} bytes: EC2 accepts {USER_DATA_LIMIT}")
    return text
