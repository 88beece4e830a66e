"""HTTP caching helpers shared by the tiers that serve seat maps: content negotiation among the
encodings a seat map is stored in, and `If-None-Match` matching against per-encoding ETags
(`"<etag>-br"` is the brotli variant of `"<etag>"`)."""

from __future__ import annotations

from typing import Final

# Preference order; the regional node keeps a seat map pre-compressed in each of these.
ENCODINGS: Final = ("br", "zstd", "gzip", "identity")


def choose_encoding(header: str) -> str:
    """The best encoding the client accepts, by our preference (br > zstd > gzip > identity)."""
    accepted: dict[str, float] = {}
    for part in header.split(","):
        token, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if token:
            accepted[token.strip().lower()] = quality
    wildcard = accepted.get("*", 0.0)
    for encoding in ENCODINGS[:-1]:
        if accepted.get(encoding, wildcard) > 0:
            return encoding
    return "identity"


def etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    base = etag.strip('"')
    for candidate in header.split(","):
        value = candidate.strip().removeprefix("W/").strip('"')
        if value == base or value.rsplit("-", 1)[0] == base:
            return True
    return False
