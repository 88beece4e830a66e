"""The media types Tessera speaks, named once."""

from typing import Final

JSON: Final = "application/json"
JSON_BYTES: Final = b"application/json"
# The binary seat map (docs/seatmap-format.md).
SEATMAP: Final = "application/vnd.tessera.seatmap"
