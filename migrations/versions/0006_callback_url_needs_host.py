"""A callback URL must name a host, whoever inserts the job.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

0001's check on ``jobs.callback_url`` (``^https?://\\S+$``) lets ``http:///hook`` through: a URL
without a host (nor ``http://:80/``), which the Python API, the CLI and the HTTP API refuse, but which plain SQL
(``INSERT`` or ``pgjobs.enqueue(...)``) could store. Its callback then failed twelve times
before anyone learned why. Now a ``BEFORE INSERT`` trigger refuses it
with the same one-line message and error code (22023) as ``pgjobs.enqueue()``, for every
producer.

A trigger, not a tighter ``CHECK``: a constraint is checked on every update of a row, so a
row stored before this revision with such a URL could no longer have its status written by a
worker. On ``INSERT`` only: any ``BEFORE UPDATE`` row trigger, even one whose column list
rules it out, makes PostgreSQL fetch and lock every updated row again, which cost claims
about 1 % (measured); a URL changed later by hand-written SQL is left to the ``CHECK``. Its
``WHEN`` clause (evaluated in C) lets every job without a callback URL through at no cost.
The pattern is pgjobs.validation's.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None
#: See script.py.mako: code older than a breaking revision refuses to run against it.
breaking = False

UPGRADE = r"""
CREATE FUNCTION __S__.jobs_callback_url_check() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.callback_url !~ '^https?://[^\s/?#:@][^\s/?#]*([/?#]\S*)?$' OR length(NEW.callback_url) > 2048 THEN
        RAISE EXCEPTION 'pgjobs: invalid callback_url %: an http:// or https:// URL with a host, of at most 2048 characters',
            quote_literal(left(NEW.callback_url, 200))
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN NEW;
END
$fn$;
COMMENT ON FUNCTION __S__.jobs_callback_url_check() IS
    'pgjobs: refuse a callback URL without a host (its delivery could never succeed)';
CREATE TRIGGER jobs_callback_url_check BEFORE INSERT ON __S__.jobs
    FOR EACH ROW
    WHEN (NEW.callback_url IS NOT NULL)
    EXECUTE FUNCTION __S__.jobs_callback_url_check();
"""

DOWNGRADE = r"""
DROP TRIGGER IF EXISTS jobs_callback_url_check ON __S__.jobs;
DROP FUNCTION IF EXISTS __S__.jobs_callback_url_check();
"""


def _render(template: str) -> str:
    schema = op.get_context().version_table_schema
    assert schema, "pgjobs migrations run with version_table_schema set to the pgjobs schema"
    return template.replace("__S__", schema)


def upgrade() -> None:
    op.execute(_render(UPGRADE))


def downgrade() -> None:
    op.execute(_render(DOWNGRADE))
