"""Who is connected to this edge, and the fan-out of ``chat.deliver`` entries to them.

The hub is the edge's session registry (as Centrifugo's hub is its node's): sessions by id
and a count per user (the connection limit), and :meth:`Hub.deliver`, which writes one
delivery to the sessions it lists. A frame is encoded once for all of them; a sync answer is
handed to the sync assembly (``edge/sync.py``), which may read the store first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from chat import protocol
from chat.records import Delivery, SyncAnswer
from edge import metrics
from edge.session import Session

AnswerSync = Callable[[Session, SyncAnswer], None]


class PresenceWatches(Protocol):
    """What the hub hands presence (``edge/presence.py``): the frames that can change or show
    what a session may see of others."""

    def conversation_changed(self, session: Session, frame: dict[str, Any]) -> None: ...

    def presence_changed(self, session: Session, frame: dict[str, Any]) -> None: ...


class Hub:
    def __init__(self, answer_sync: AnswerSync, watches: PresenceWatches | None = None) -> None:
        self.sessions: dict[str, Session] = {}
        self.sessions_per_user: dict[str, int] = {}
        self._answer_sync = answer_sync
        self._watches = watches

    def __len__(self) -> int:
        return len(self.sessions)

    def add(self, session: Session) -> None:
        self.sessions[session.id] = session
        self.sessions_per_user[session.user] = self.sessions_per_user.get(session.user, 0) + 1
        metrics.connections.set(len(self.sessions))

    def remove(self, session: Session) -> None:
        if self.sessions.pop(session.id, None) is None:
            return
        left = self.sessions_per_user[session.user] - 1
        if left:
            self.sessions_per_user[session.user] = left
        else:
            del self.sessions_per_user[session.user]
        metrics.connections.set(len(self.sessions))

    def get(self, session_id: str) -> Session | None:
        return self.sessions.get(session_id)

    def count_for(self, user: str) -> int:
        return self.sessions_per_user.get(user, 0)

    def expired(self, now: float) -> Iterator[Session]:
        """Sessions whose token has expired and that are not closing yet."""
        for session in self.sessions.values():
            if session.expires_at <= now and not session.closing:
                yield session

    def deliver(self, delivery: Delivery) -> None:
        """One ``chat.deliver`` entry: a frame (or a sync answer) for some of our sessions. Runs
        for every entry the edge reads: the frame is encoded once, whatever the session count."""
        sessions = self.sessions
        if "frame" in delivery:
            frame = delivery["frame"]
            text = protocol.encode(frame)
            frame_type = frame.get("type", "?")
            for sid in delivery["sessions"]:
                session = sessions.get(sid)
                if session is None:
                    continue  # closed meanwhile, or held by the edge that had this slot before
                if frame_type == "message":
                    session.send_message_encoded(text, frame["conversation_id"], frame["seq"])
                elif frame_type == "presence" and self._watches is not None:
                    self._watches.presence_changed(session, frame)
                else:
                    session.send_encoded(text, frame_type)
                    if frame_type == "conversation" and self._watches is not None:
                        self._watches.conversation_changed(session, frame)
                observe_latency(session, frame)
            return
        for sid in delivery["sessions"]:
            session = sessions.get(sid)
            if session is not None:
                self._answer_sync(session, delivery["sync"])


def observe_latency(session: Session, frame: dict[str, Any]) -> None:
    frame_type = frame.get("type")
    if frame_type == "message":
        metrics.delivery_seconds.observe(max(0.0, time.time() - frame["ts"] / 1000))
    elif frame_type == "message.ack":
        started = session.pending_sends.pop(frame["client_msg_id"], None)
        if started is not None:
            metrics.ack_seconds.observe(time.monotonic() - started)
