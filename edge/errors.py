"""The edge's errors: the kernel's one error base (tessera/web.py `ApiError`, one mapping to
HTTP for every tier, the fast paths included)."""

from __future__ import annotations

from collections.abc import Mapping

from tessera.web import JSON, ApiError, error_body

__all__ = ["JSON", "EdgeError", "error_body"]


class EdgeError(ApiError):
    """A refusal the fan (or operator) should see: `status`, a machine-readable `code`, a message
    safe to return, and optional headers (`Retry-After` on 429/503)."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message, status=status, code=code, headers=headers)
