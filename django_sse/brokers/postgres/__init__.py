"""The PostgreSQL broker: history in a table of the site's database, live events by LISTEN/NOTIFY."""

from __future__ import annotations
