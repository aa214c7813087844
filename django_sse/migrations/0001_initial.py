"""The PostgreSQL broker's tables (``django_sse.brokers.postgres.schema``), on PostgreSQL only.

On any other database this migration does nothing: the other brokers keep
nothing in the database.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations


def create_tables(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    from django_sse.brokers.postgres.schema import CREATE

    for statement in CREATE:
        schema_editor.execute(statement)


def drop_tables(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    from django_sse.brokers.postgres.schema import DROP

    for statement in DROP:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [migrations.RunPython(create_tables, drop_tables, elidable=False)]
