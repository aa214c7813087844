"""GRIP mode: a proxy (Pushpin, Fastly Fanout) holds the streams; Django answers once per connection.

With ``SSE_GRIP_URL`` set, a ``RedisQueueView`` does not stream. It answers
each stream request once, with the opening and whatever the client missed,
plus GRIP instructions (``Grip-Hold: stream`` and the channels to hold it
on); the proxy keeps the client's connection, and ``send_event`` publishes
every event to the proxy's control API as well as to the broker's history.
A site on plain sync workers can then serve as many streams as the proxy
holds.

Replay stays the library's, through GRIP's reliability: every channel is
held with the id of the last event the client got (``prev-id``), every
published event names the id before it, and when the two disagree (a
publish lost or reordered, a subscription that started late) the proxy asks
the view again, through the link it was given (``Grip-Link``), for what
follows the last id it delivered.

- ``names``: the proxy's channel names for a stream's channels.
- ``instructions``: the GRIP headers of a hold, the signed link the proxy
  follows, and the ``Grip-Last`` header it sends back.
- ``hold``: the view's one answer (the opening, the catch-up, the hold).
- ``publisher``: the control API client ``send_event`` and revocation use.
"""
