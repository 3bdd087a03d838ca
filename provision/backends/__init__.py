"""Backends create, list, replace and destroy machines; everything else happens over SSH."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import BadInput

if TYPE_CHECKING:
    from ..config import ClassroomConfig
    from ..state import ClassroomState
    from .base import Backend

BACKENDS = ("local", "aws")


def get_backend(name: str, config: ClassroomConfig, state: ClassroomState) -> Backend:
    """The backend called `name`; its library (Docker SDK, Pulumi) is imported only here."""
    if name == "local":
        from .local import LocalBackend

        return LocalBackend(config, state)
    if name == "aws":
        try:
            from .aws import AwsBackend
        except ImportError as exc:  # pulumi / boto3 are an optional extra
            raise BadInput(
                f"the aws backend needs extra packages ({exc.name}): pip install 'classroom[aws]'"
            ) from None
        return AwsBackend(config, state)
    raise BadInput(f"--backend: unknown backend {name!r} (choose from {', '.join(BACKENDS)})")
