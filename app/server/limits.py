"""Every bound the listener puts on a client, with its default and why.

The listener faces the internet (through a tunnel, a port forward, or a LAN): each of these
limits closes one way for a single client to stall the event loop, fill memory, hold sockets or
grow the recording. All are configurable; `trackmon record --help` lists the options.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one request or connection may cost."""

    #: Deepest nesting of arrays/objects in a body. flespi's convert_message mappings nest a
    #: few levels; 32 leaves room while staying far below Python's recursion limit (1,000, hit by
    #: flattening) and orjson's encoding limit (254), both of which used to turn into a 500.
    max_depth: int = 32
    #: Messages in one batch. A 64 MiB batch of typical flespi messages (~600 B) holds ~110,000;
    #: 250,000 leaves room for small messages while a body of 20 million tiny elements (which
    #: used to take 13 GB as normalized messages) is refused after a scan of its bytes.
    max_messages: int = 250_000
    #: Bodies up to this size are parsed on the event loop in one call (~5 ms per MiB with
    #: orjson, the ingest hot path); larger or compressed ones go to a worker thread in slices.
    inline_bytes: int = 1 << 20
    #: Size of each slice of a larger body handed to orjson (about 1.5 ms of GIL each).
    slice_bytes: int = 256 << 10
    #: gzip members accepted in one body (a concatenation of members is valid gzip).
    max_gzip_members: int = 1024
    #: Seconds from a connection's start (or the first byte of its next request) to the end of
    #: the request's headers. A flespi request arrives in one go; a slow-loris client does not.
    header_timeout: float = 10.0
    #: Seconds a request body may go without a single byte arriving.
    body_idle_timeout: float = 30.0
    #: Seconds for a whole body: 64 MiB at ~1 MB/s, with room.
    body_timeout: float = 120.0
    #: Seconds an idle keep-alive connection stays open between requests (nginx's default).
    keepalive_timeout: float = 75.0
    #: Open connections at once. A flespi stream uses one; when the cap is reached, the
    #: connection that has waited longest for a request is closed to make room, so idle or slow
    #: clients cannot lock valid streams out. Also kept below the process's open-file limit.
    max_connections: int = 512
    #: Bodies larger than ``inline_bytes`` being read or parsed at once (others wait their
    #: turn): bounds memory to a few large batches however many clients send them.
    large_bodies: int = 2

    def __post_init__(self) -> None:
        for name in self.__slots__:
            if not getattr(self, name) > 0:
                raise ValueError(f"limit {name} must be positive")
