"""A tap on a printer simulator: every byte it receives, one stream per connection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from drivers.sim import Simulator


class Tap:
    """Records every byte a simulator receives, one stream per connection."""

    def __init__(self, sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
        self.streams: list[bytearray] = []
        open_channel = sim.open_channel

        def recording() -> Any:
            channel = open_channel()
            stream = bytearray()
            self.streams.append(stream)
            return _Recording(channel, stream)

        monkeypatch.setattr(sim, "open_channel", recording)

    @property
    def received(self) -> bytes:
        return b"".join(self.streams)


@dataclass
class _Recording:
    channel: Any
    stream: bytearray

    def feed(self, data: bytes) -> bytes:
        self.stream += data
        reply: bytes = self.channel.feed(data)
        return reply

    def close(self) -> None:
        self.channel.close()
