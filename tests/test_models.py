"""The models and the migrations agree; history queries are index range scans."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from quartchat import migrate
from quartchat.models import Base, Message
from quartchat.store import message_select


@pytest.fixture
def migrated(tmp_path: Path) -> str:
    migrate.upgrade(f"sqlite+aiosqlite:///{tmp_path}/m.db")
    return f"sqlite:///{tmp_path}/m.db"


def test_autogenerate_finds_nothing_between_models_and_migrations(migrated: str) -> None:
    with create_engine(migrated).connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_downgrade_to_base_and_upgrade_again(tmp_path: Path, migrated: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/m.db"
    assert migrate.current(url).startswith("0001")
    migrate.downgrade(url, "base")
    assert inspect(create_engine(migrated)).get_table_names() == ["alembic_version"]
    migrate.upgrade(url)
    assert {"users", "sessions", "rooms", "messages"} <= set(inspect(create_engine(migrated)).get_table_names())


def test_the_database_runs_in_wal_mode(migrated: str) -> None:
    with create_engine(migrated).connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"


@pytest.mark.parametrize(
    "query",
    [
        message_select().where(Message.room == "r").order_by(Message.id.desc()).limit(51),
        message_select().where(Message.room == "r", Message.id > 5).order_by(Message.id).limit(1001),
        message_select().where(Message.room == "r", Message.id < 5).order_by(Message.id.desc()).limit(51),
    ],
    ids=["newest", "after", "before"],
)
def test_history_reads_are_index_range_scans(migrated: str, query: object) -> None:
    engine = create_engine(migrated)
    compiled = query.compile(engine, compile_kwargs={"literal_binds": True})  # type: ignore[attr-defined]
    with engine.connect() as connection:
        plan = " | ".join(row[-1] for row in connection.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
    assert "SEARCH messages USING" in plan and "ix_messages_room_id" in plan, plan
    assert "SCAN messages" not in plan and "TEMP B-TREE" not in plan, plan
