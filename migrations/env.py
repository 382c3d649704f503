"""Alembic environment of pgjobs.

pgjobs drives alembic programmatically (``pgjobs migrate``, :mod:`pgjobs.migrate`), passing
the target schema and, online, an open SQLAlchemy connection in ``config.attributes``. The
version table is ``<schema>.alembic_version``: pgjobs' history never mixes with the
application's own alembic history.

Concurrency: the whole upgrade runs in one transaction that first takes a transaction-level
advisory lock keyed by the schema name, so two ``pgjobs migrate`` started at once apply each
revision exactly once (the second waits, then finds the schema at head). The lock is
released at commit, which keeps it safe behind pgbouncer in transaction mode.
"""

from __future__ import annotations

from alembic import context

config = context.config
schema: str = config.attributes["schema"]
LOCK_SQL = f"SELECT pg_advisory_xact_lock(hashtext('pgjobs.migrate.{schema}'))"
CREATE_SCHEMA_SQL = f"CREATE SCHEMA IF NOT EXISTS {schema}"


def run_offline() -> None:
    context.configure(
        dialect_name="postgresql",
        dialect_opts={"paramstyle": "named"},
        literal_binds=True,
        version_table_schema=schema,
        transactional_ddl=True,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.execute(LOCK_SQL)
        context.execute(CREATE_SCHEMA_SQL)
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        version_table_schema=schema,
        transactional_ddl=True,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        connection.exec_driver_sql(LOCK_SQL)
        connection.exec_driver_sql(CREATE_SCHEMA_SQL)
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
