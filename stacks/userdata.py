"""Cloud-init user data for one host, rendered from `templates/cloud-init.yaml.j2`."""

from __future__ import annotations

from datetime import timezone
from functools import cache
from pathlib import Path

from . import ClassroomSpec, HostEntry

TEMPLATE = "cloud-init.yaml.j2"


@cache
def template_text(name: str = TEMPLATE) -> str:
    """The template, from the repository's `templates/` or the installed `provision.templates`."""
    local = Path(__file__).resolve().parent.parent / "templates" / name
    if local.is_file():
        return local.read_text(encoding="utf-8")
    from importlib.resources import files

    return files("provision.templates").joinpath(name).read_text(encoding="utf-8")


def on_calendar(spec: ClassroomSpec) -> str:
    """The expiry as a systemd calendar event, in UTC (`2025-03-01 18:00:00 UTC`)."""
    return spec.expires_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def render_user_data(host: HostEntry, spec: ClassroomSpec) -> str:
    from jinja2 import Environment, StrictUndefined

    env = Environment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)
    template = env.from_string(template_text())
    return template.render(
        classroom=spec.name,
        host=host,
        admin_public_key=spec.admin_public_key,
        registry_mirror=spec.registry_mirror,
        expires_at=spec.expires_at_text,
        on_calendar=on_calendar(spec),
    )
