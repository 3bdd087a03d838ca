"""Backends create, list, replace and destroy machines; everything else happens over SSH."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import BadInput

if TYPE_CHECKING:
    from ..config import ClassroomConfig
    from ..state import ClassroomState
    from .base import Backend

BACKENDS = ("local", "aws")

# Extra keyword arguments for a backend's constructor, by backend name. Always empty in real
# runs; tests that drive the whole CLI in-process put their stand-ins here (for aws: the Pulumi
# engine, boto3's clients), since the CLI makes its backend itself.
BACKEND_OPTIONS: dict[str, dict[str, Any]] = {}
# A whole backend of their own, by backend name, for tests that drive the CLI with no engine and
# no cloud at all (tests/fakes.py: FakeBackend). Always empty in real runs.
BACKEND_FACTORIES: dict[str, Callable[[ClassroomConfig, ClassroomState], Backend]] = {}


def get_backend(name: str, config: ClassroomConfig, state: ClassroomState) -> Backend:
    """The backend called `name`; its library (Docker SDK, Pulumi) is imported only here."""
    if name in BACKEND_FACTORIES:
        return BACKEND_FACTORIES[name](config, state)
    if name == "local":
        from .local import LocalBackend

        return LocalBackend(config, state, **BACKEND_OPTIONS.get("local", {}))
    if name == "aws":
        try:
            from .aws.backend import AwsBackend
        except ImportError as exc:  # pulumi / boto3 are an optional extra
            raise BadInput(
                f"the aws backend needs extra packages ({exc.name}): pip install 'classroom[aws]'"
            ) from None
        return AwsBackend(config, state, **BACKEND_OPTIONS.get("aws", {}))
    raise BadInput(f"--backend: unknown backend {name!r} (choose from {', '.join(BACKENDS)})")
