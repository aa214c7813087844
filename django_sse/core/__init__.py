"""The core every stream shares, whatever serves it: no server, no HTTP, no broker protocol.

``hub`` (one subscriber per process, fanning messages out to mailboxes),
``mailbox`` (what one stream waits on), ``cursor`` and ``positions`` (where
a stream is in each channel's history), ``heartbeat`` (one timer wheel for
every stream's silence and lifetime), ``registry`` (the streams of this
process), ``control`` (messages between processes), ``shared_reads`` (one
history read for a storm of reconnections), ``concurrency`` (the one seam
for waiting, spawning and leaving the event loop), ``database`` (giving a
stream's database connections back) and ``runtime`` (the process-wide
objects, built from settings).
"""
