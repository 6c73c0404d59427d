"""The sink's writes against the real MongoDB-wire server: a replayed batch is harmless."""

from __future__ import annotations

import uuid
from typing import Any

from pymongo import AsyncMongoClient

from sinks.mongo_sink import BatchOps, insert_new
from tests.integration.conftest import App


async def test_a_replayed_batch_inserts_nothing_twice_and_fails_nothing(app: App) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(app.settings.mongo_url)
    collection = client[app.settings.mongo_db][f"test_sink_{uuid.uuid4().hex}"]
    try:
        first, replay = BatchOps(), BatchOps()
        for seq in (1, 2):
            first.add_message({"conversation_id": "c", "seq": seq, "body": f"m{seq}"})
        for seq in (1, 2, 3):  # the sink died after writing 1 and 2, before committing
            replay.add_message({"conversation_id": "c", "seq": seq, "body": f"m{seq}"})
        await insert_new(collection, first.messages)
        await insert_new(collection, replay.messages)
        stored = [d async for d in collection.find({}).sort("seq", 1)]
        assert [(d["_id"], d["body"]) for d in stored] == [
            ("c:1", "m1"),
            ("c:2", "m2"),
            ("c:3", "m3"),
        ]
    finally:
        await collection.drop()
        await client.close()
