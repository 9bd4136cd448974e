"""What the ipc.proc tests of both faces share."""
from __future__ import annotations

__all__ = ["FLOOD", "Sink"]


class Sink:
    """A callback that keeps what arrived, per stream."""

    def __init__(self) -> None:
        self.chunks: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        self.calls = 0

    def __call__(self, stream: str, data: bytes) -> None:
        assert isinstance(data, bytes) and data
        self.chunks[stream].append(data)
        self.calls += 1

    @property
    def out(self) -> bytes:
        return b"".join(self.chunks["stdout"])

    @property
    def err(self) -> bytes:
        return b"".join(self.chunks["stderr"])


#: A Python child that writes 3 MiB to stderr and 3 MiB to stdout before it
#: reads stdin, then echoes each piece of its input to both.
FLOOD = r"""
import os, sys
os.write(2, b"E" * (3 << 20))
sys.stdout.buffer.write(b"O" * (3 << 20)); sys.stdout.flush()
while True:
    d = os.read(0, 65536)
    if not d: break
    sys.stdout.buffer.write(d); sys.stdout.flush()
    os.write(2, d)
"""
