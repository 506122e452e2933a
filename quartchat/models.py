"""Tables: users, their sessions and bot tokens, rooms (a counter row per room), who
belongs to which room, chat messages with their edit and delete events, and leases."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, MetaData, String, Text, false, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-assigns ids to an INTEGER PRIMARY KEY (the rowid); elsewhere 64 bits.
MessageId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    # NFC + casefold of the name: what makes two names the same (docs/protocol.md §10).
    name_key: Mapped[str] = mapped_column(String(128), unique=True)
    # Unicode TR39's skeleton of name_key: names that look alike share it. A new name
    # whose skeleton is taken is refused (quartchat/accounts.py).
    name_skeleton: Mapped[str | None] = mapped_column(String(512), index=True)
    # None for a user created by an import: the name is reserved until an operator
    # sets a password.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    # "admin" or "member" (docs/protocol.md §11); the first account is an admin.
    role: Mapped[str] = mapped_column(String(16), server_default="member")
    # A disabled user cannot sign in; its sessions and tokens are ended when it is set.
    disabled: Mapped[bool] = mapped_column(Boolean, server_default=false())


class Session(Base):
    """A signed-in browser. Deleting the row ends that session wherever its cookie is."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class ApiToken(Base):
    """A bot's bearer token: only its SHA-256 is kept. Deleting the row revokes it."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # A JSON list of the room names the token is limited to; None: every room its user may use.
    rooms: Mapped[str | None] = mapped_column(Text)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class Room(Base):
    """One row per room: made by its first message (public) or explicitly (any kind);
    its counters are updated in the same transaction as its messages."""

    __tablename__ = "rooms"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_count: Mapped[int] = mapped_column(BigInteger)
    last_id: Mapped[int] = mapped_column(BigInteger)
    # "public", "private" or "dm" (docs/protocol.md §11).
    kind: Mapped[str] = mapped_column(String(8), server_default="public")
    created_ms: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # Days its messages are kept (docs/protocol.md §12); None: QUARTCHAT_RETENTION_DAYS.
    retention_days: Mapped[int | None] = mapped_column(Integer)


class Lease(Base):
    """A task that must run once across processes and hosts holds its row until expires_ms."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_ms: Mapped[int] = mapped_column(BigInteger)


class Membership(Base):
    """A user's place in a room: its role there ("owner" or "member") and how far it has read."""

    __tablename__ = "memberships"
    __table_args__ = (Index("ix_memberships_user_id", "user_id"),)

    room: Mapped[str] = mapped_column(ForeignKey("rooms.name", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(8), server_default="member")
    joined_ms: Mapped[int] = mapped_column(BigInteger)
    # The highest message id the user has read in the room (docs/protocol.md §14).
    last_read_id: Mapped[int] = mapped_column(BigInteger, server_default="0")


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        # "newest N of a room", "after id N in a room", "before id N": range scans.
        Index("ix_messages_room_id", "room", "id", unique=True),
        # A client_id is unique per user and room (docs/protocol.md): a retry is found
        # without scanning the user's history, and a bot counting from 1 in each room
        # never meets another room's message.
        Index("uq_messages_user_id_room_client_id", "user_id", "room", "client_id", unique=True),
        Index("ix_messages_ts_ms", "ts_ms"),
        # A message's edit and delete events; chat rows (target NULL) never enter it.
        Index(
            "ix_messages_target",
            "target",
            sqlite_where=text("target IS NOT NULL"),
            postgresql_where=text("target IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(MessageId, primary_key=True, autoincrement=True)
    room: Mapped[str] = mapped_column(ForeignKey("rooms.name"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    text: Mapped[str] = mapped_column(Text)
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    # The same time as docs/protocol.md §5 writes it ("2026-11-24T15:31:06.123Z"), kept so that an
    # export need not format every date again: on SQLite that was a third of its cost.
    ts: Mapped[str] = mapped_column(String(32), server_default="")
    client_id: Mapped[str | None] = mapped_column(String(64))
    # "chat", or an event in the room's id sequence: "edit" or "delete" (docs/protocol.md §12).
    kind: Mapped[str] = mapped_column(String(8), server_default="chat")
    # An event's chat message; None on a chat row.
    target: Mapped[int | None] = mapped_column(BigInteger)
    # On a chat row, its current state: when it was last edited, and whether it is deleted
    # (then its text, and every edit event's text, is "").
    edited_ms: Mapped[int | None] = mapped_column(BigInteger)
    deleted: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # JSON list of the user ids a chat or edit text mentions (docs/protocol.md §14); None: nobody.
    mentions: Mapped[str | None] = mapped_column(Text)
