"""The broker's tables and every statement it runs on them, in one place.

Positions are ``<xid>-<id>``: the 64-bit id of the transaction that inserted
the row (``xid8``, ``pg_current_xact_id()``) and the row's own identity. A
reader only ever reads rows whose transaction id is below the *horizon*,
``pg_snapshot_xmin(pg_current_snapshot())``, the oldest transaction still
running when its statement began: every transaction below it has ended, and
every one that has not ended, or not yet begun, has an id at or above it.
So a row that becomes visible later always sorts after everything a reader
has returned (ordered by ``(xid, id)``), and a cursor that follows
``(xid, id) > last`` cannot pass over a row that commits later. The price:
while a transaction that has written anything (on any database of the
cluster) stays open, the rows committed after it began wait for it.

The NOTIFY payload is empty, so the notifications of one transaction
collapse into one; it only wakes the listeners, which read the rows.
"""

from __future__ import annotations

#: The table of events (the migration ``django_sse.0001_initial`` creates it).
EVENTS = "django_sse_event"
#: Per channel, the newest position the cleaner deleted (what makes a trimmed position a gap).
TRIMS = "django_sse_trim"
#: Per process, its report (``write_presence``) and when it expires.
PRESENCE = "django_sse_presence"
#: Per process, how far its listener has read, and when it last said so (the cleaner's bound).
LISTENERS = "django_sse_listener"

#: The NOTIFY channel that wakes listeners (payload empty) and the one of control messages.
WAKE_CHANNEL = "django_sse"
CONTROL_CHANNEL = "django_sse_control"

CREATE = [
    f"""CREATE TABLE IF NOT EXISTS {EVENTS} (
        xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
        id bigint GENERATED ALWAYS AS IDENTITY,
        channel text NOT NULL,
        event text NOT NULL,
        data text NOT NULL,
        history boolean NOT NULL,
        created timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (xid, id)
    )""",
    f"CREATE INDEX IF NOT EXISTS {EVENTS}_channel ON {EVENTS} (channel, xid, id)",
    f"CREATE INDEX IF NOT EXISTS {EVENTS}_created ON {EVENTS} (created)",
    f"""CREATE TABLE IF NOT EXISTS {TRIMS} (
        channel text PRIMARY KEY, xid xid8 NOT NULL, id bigint NOT NULL
    )""",
    f"""CREATE TABLE IF NOT EXISTS {PRESENCE} (
        process text PRIMARY KEY, report text NOT NULL, expires timestamptz NOT NULL
    )""",
    f"""CREATE TABLE IF NOT EXISTS {LISTENERS} (
        process text PRIMARY KEY, xid xid8 NOT NULL, id bigint NOT NULL, seen timestamptz NOT NULL
    )""",
]

DROP = [f"DROP TABLE IF EXISTS {table}" for table in (LISTENERS, PRESENCE, TRIMS, EVENTS)]

_HORIZON = "pg_snapshot_xmin(pg_current_snapshot())"

#: Insert one event and wake the listeners; returns its xid (as text) and id.
#: Runs on Django's connection, so inside ``transaction.atomic()`` it is part of that transaction.
PUBLISH = f"""
    WITH row AS (
        INSERT INTO {EVENTS} (channel, event, data, history) VALUES (%s, %s, %s, %s)
        RETURNING xid, id
    )
    SELECT row.xid::text, row.id, pg_notify('{WAKE_CHANNEL}', '') FROM row
"""

#: The horizon now, as text.
HORIZON = f"SELECT {_HORIZON}::text"

#: The listener's read: rows after (xid, id), oldest first; ``ready`` is false from the
#: first row at or above the horizon on (such rows are committed but must wait).
#: Pitfall: ORDER BY names the table's column (``e.xid``); a bare ``xid`` would be the
#: output column, the text, and sort 1000 before 999.
LIVE = f"""
    SELECT e.xid::text, e.id, e.channel, e.event, e.data, e.history, e.xid < {_HORIZON}
    FROM {EVENTS} e WHERE (e.xid, e.id) > (%s::xid8, %s)
    ORDER BY e.xid, e.id LIMIT %s
"""

#: A channel's history after a position, bounded by the horizon, a count and (roughly) bytes,
#: with what tells a gap: the tip, whether the position is a row, the newest trimmed position;
#: and whether committed rows of the channel wait behind the horizon.
#: Parameters: channel, after xid, after id, limit, max bytes (0: none).
HISTORY = f"""
    WITH h AS MATERIALIZED (SELECT {_HORIZON} AS horizon),
    meta AS (
        SELECT
            (SELECT xid::text || '-' || id FROM {EVENTS}, h
             WHERE channel = %(channel)s AND history AND xid < h.horizon
             ORDER BY xid DESC, id DESC LIMIT 1) AS tip,
            EXISTS (SELECT 1 FROM {EVENTS}
                    WHERE xid = %(xid)s::xid8 AND id = %(id)s AND channel = %(channel)s
                    AND history) AS known,
            (SELECT xid::text || '-' || id FROM {TRIMS} WHERE channel = %(channel)s) AS trimmed,
            EXISTS (SELECT 1 FROM {EVENTS}, h
                    WHERE channel = %(channel)s AND history AND xid >= h.horizon) AS held
    ),
    page AS (
        SELECT xid, id, event, data, octet_length(event) + octet_length(data) AS size
        FROM {EVENTS}, h
        WHERE channel = %(channel)s AND history AND xid < h.horizon
        AND (xid, id) > (%(xid)s::xid8, %(id)s)
        ORDER BY xid, id LIMIT %(limit)s
    ),
    sized AS (
        SELECT *, sum(size) OVER (ORDER BY xid, id) - size AS before, count(*) OVER () AS total
        FROM page
    )
    SELECT meta.tip, meta.known, meta.trimmed, meta.held, s.xid::text, s.id, s.event, s.data, s.size, s.before,
        s.total
    FROM meta LEFT JOIN LATERAL (
        SELECT * FROM sized WHERE %(max_bytes)s = 0 OR sized.before <= %(max_bytes)s
        ORDER BY xid, id
    ) s ON true
    ORDER BY s.xid, s.id
"""

#: The newest event of a channel with history, below the horizon.
LATEST = f"""
    SELECT e.xid::text, e.id, e.event, e.data FROM {EVENTS} e
    WHERE e.channel = %s AND e.history AND e.xid < {_HORIZON}
    ORDER BY e.xid DESC, e.id DESC LIMIT 1
"""

WRITE_PRESENCE = f"""
    INSERT INTO {PRESENCE} (process, report, expires)
    VALUES (%s, %s, clock_timestamp() + make_interval(secs => %s))
    ON CONFLICT (process) DO UPDATE SET report = excluded.report, expires = excluded.expires
"""
EXPIRE_PRESENCE = f"DELETE FROM {PRESENCE} WHERE expires <= clock_timestamp()"
READ_PRESENCE = f"SELECT report FROM {PRESENCE} WHERE expires > clock_timestamp()"

#: A listener says how far it has read (its cursor).
LISTENER_SEEN = f"""
    INSERT INTO {LISTENERS} (process, xid, id, seen) VALUES (%s, %s::xid8, %s, clock_timestamp())
    ON CONFLICT (process) DO UPDATE SET xid = excluded.xid, id = excluded.id, seen = excluded.seen
"""
LISTENER_GONE = f"DELETE FROM {LISTENERS} WHERE process = %s"

#: The cleaner's lock (``pg_try_advisory_xact_lock``): one process cleans at a time.
CLEANER_LOCK = 0x64_6A_73_73_65  # "djsse"

#: One batch of cleaning, in one short transaction (which holds the horizon back while it
#: runs): at most %(batch)s rows, oldest first, among those below the horizon
#: and at or before the cursor of every live listener (seen within %(alive)s seconds):
#: rows without history, rows older than %(ttl)s seconds (0: none by age), rows not
#: among the %(maxlen)s newest of their channel. Records each channel's newest deleted
#: position in TRIMS; returns how many rows went.
CLEAN = f"""
    WITH h AS MATERIALIZED (SELECT {_HORIZON} AS horizon),
    bound AS MATERIALIZED (
        SELECT h.horizon, coalesce(l.xid, h.horizon) AS xid, coalesce(l.id, 0) AS id
        FROM h LEFT JOIN (
            SELECT xid, id FROM {LISTENERS}
            WHERE seen > clock_timestamp() - make_interval(secs => %(alive)s)
            ORDER BY xid, id LIMIT 1
        ) l ON true
    ),
    ranked AS (
        SELECT e.xid, e.id, e.history, e.created, row_number() OVER (
            PARTITION BY e.channel, e.history ORDER BY e.xid DESC, e.id DESC
        ) AS rank
        FROM {EVENTS} e
    ),
    victims AS (
        SELECT r.xid, r.id FROM ranked r, bound b
        WHERE r.xid < b.horizon AND (r.xid, r.id) <= (b.xid, b.id) AND (
            NOT r.history
            OR r.rank > %(maxlen)s
            OR (%(ttl)s > 0 AND r.created < clock_timestamp() - make_interval(secs => %(ttl)s))
        )
        ORDER BY r.xid, r.id LIMIT %(batch)s
    ),
    doomed AS (
        DELETE FROM {EVENTS} e USING victims v WHERE e.xid = v.xid AND e.id = v.id
        RETURNING e.channel, e.xid, e.id, e.history
    ),
    newest AS (
        SELECT DISTINCT ON (channel) channel, xid, id FROM doomed WHERE history
        ORDER BY channel, xid DESC, id DESC
    ),
    recorded AS (
        INSERT INTO {TRIMS} AS t (channel, xid, id) SELECT channel, xid, id FROM newest
        ON CONFLICT (channel) DO UPDATE SET xid = excluded.xid, id = excluded.id
        WHERE (t.xid, t.id) < (excluded.xid, excluded.id)
    )
    SELECT count(*) FROM doomed
"""

#: Forget the trims of channels that have no rows left (their positions are then "history lost").
FORGET_TRIMS = f"""
    DELETE FROM {TRIMS} t WHERE NOT EXISTS (SELECT 1 FROM {EVENTS} e WHERE e.channel = t.channel)
"""
#: How full the cluster's NOTIFY queue is (0 to 1).
QUEUE_USAGE = "SELECT pg_notification_queue_usage()"
#: Forget listeners that have not been seen for an hour.
FORGET_LISTENERS = f"DELETE FROM {LISTENERS} WHERE seen < clock_timestamp() - interval '1 hour'"
