"""Alembic environment of the score store.

`risk_model.store.upgrade` (`student-risk db upgrade`) runs the migrations, passing its connection in
`config.attributes["connection"]`. To write a new revision by hand:

    alembic -c risk_model/migrations/alembic.ini -x url=sqlite:///runtime/scores.db revision --autogenerate -m "..."

then copy the change into the tables of `risk_model/store.py` (a test compares the two).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from risk_model.store import metadata


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:  # the alembic command line
        url = context.get_x_argument(as_dictionary=True).get("url")
        if not url:
            raise SystemExit("Pass the store with -x url=<SQLAlchemy URL>.")
        with create_engine(url).connect() as conn:
            _run(conn)
            conn.commit()
        return
    _run(connection)


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
