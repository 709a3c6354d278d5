"""Buckets over real sockets: REST routes and errors, WRITE_BUCKET bytes, events, retention."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from server_helpers import REF_TEMPERATURE_PAYLOAD, RawPeer, api_call, frame_hex, varint_hex

from iotmp.protocol.message import Message, MessageType
from iotmp.server.storage.buckets import RecordRow
from iotmp.server.testing import TestDevice, TestServer, run_test_server

RECORD = {"celsius": 21.5, "humidity": 45}  # REF_TEMPERATURE_PAYLOAD decoded


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    devices = [TestDevice("refdev1", credential="s3cret"), TestDevice("bobdev", user="bob")]
    async with run_test_server(devices=devices, user="alice") as running:
        yield running


def assert_error(status: int, body: Any, expected: int) -> None:
    assert status == expected, body
    assert isinstance(body["error"]["message"], str)


async def make_bucket(
    http: aiohttp.ClientSession, server: TestServer, bucket: str = "temps", **extra: Any
) -> dict[str, Any]:
    body = {"bucket": bucket, "name": bucket.title(), "enabled": True, "config": {"source": "api"}}
    body.update(extra)
    status, created = await api_call(http, server, "POST", "/v1/users/alice/buckets", body)
    assert status == 200, created
    return dict(created)


# ------------------------------------------------------------------ REST routes


async def test_bucket_crud_write_read(database: str, http: aiohttp.ClientSession) -> None:
    async with run_test_server(user="alice", database=database) as server:
        created = await make_bucket(
            http, server, description="hall", retention={"period": 2, "unit": "days"}
        )
        assert created["bucket"] == "temps"
        assert created["name"] == "Temps"
        assert created["description"] == "hall"
        assert created["config"] == {"source": "api"}
        assert created["retention"] == {"period": 2, "unit": "days"}
        assert created["created"] == created["modified"] > 1_600_000_000_000
        status, body = await api_call(http, server, "GET", "/v1/users/alice/buckets")
        assert (status, [b["bucket"] for b in body]) == (200, ["temps"])

        status, body = await api_call(
            http, server, "PUT", "/v1/users/alice/buckets/temps", {"name": "T"}
        )
        assert (status, body["name"], body["description"]) == (200, "T", "hall")
        status, body = await api_call(http, server, "GET", "/v1/users/alice/buckets/temps")
        assert (status, body["name"]) == (200, "T")

        # one record, then an array, with and without their own ts
        status, _ = await api_call(
            http, server, "POST", "/v1/users/alice/buckets/temps/data", {"t": 1}
        )
        assert status == 200
        batch = [{"t": 2, "ts": 1000}, {"t": 3, "ts": 3000}, {"t": 4, "ts": 2000}]
        status, _ = await api_call(
            http, server, "POST", "/v1/users/alice/buckets/temps/data", batch
        )
        assert status == 200
        status, rows = await api_call(
            http, server, "GET", "/v1/users/alice/buckets/temps/data?items=3"
        )
        assert status == 200
        assert rows == [
            {"ts": 1000, "val": {"t": 2}},
            {"ts": 2000, "val": {"t": 4}},
            {"ts": 3000, "val": {"t": 3}},
        ]
        status, rows = await api_call(
            http, server, "GET", "/v2/users/alice/buckets/temps/data?sort=desc&items=2"
        )
        assert [r["val"]["t"] for r in rows] == [1, 3]
        status, rows = await api_call(
            http, server, "GET", "/v1/users/alice/buckets/temps/data?min_ts=1500&max_ts=3000"
        )
        assert [r["ts"] for r in rows] == [2000, 3000]

        status, _ = await api_call(http, server, "DELETE", "/v1/users/alice/buckets/temps")
        assert status == 200
        status, body = await api_call(http, server, "GET", "/v1/users/alice/buckets/temps/data")
        assert_error(status, body, 404)
        # re-created under the same id, it is empty: the records went with the bucket
        await make_bucket(http, server)
        status, rows = await api_call(http, server, "GET", "/v1/users/alice/buckets/temps/data")
        assert (status, rows) == (200, [])


async def test_buckets_survive_restart(http: aiohttp.ClientSession, server: TestServer) -> None:
    await make_bucket(http, server)
    await api_call(http, server, "POST", "/v1/users/alice/buckets/temps/data", {"t": 7, "ts": 5})
    await server.stop()
    await server.start()
    status, body = await api_call(http, server, "GET", "/v1/users/alice/buckets/temps")
    assert (status, body["bucket"]) == (200, "temps")
    status, rows = await api_call(http, server, "GET", "/v1/users/alice/buckets/temps/data")
    assert rows == [{"ts": 5, "val": {"t": 7}}]


BAD_CREATES: list[tuple[Any, int]] = [
    ({"name": "x", "config": {"source": "api"}}, 400),  # no id
    ({"bucket": "bad id!", "config": {"source": "api"}}, 400),
    ({"bucket": "b", "config": {"source": "ftp"}}, 400),
    ({"bucket": "b", "config": {"source": "device", "resource": "t"}}, 400),  # no device
    (
        {
            "bucket": "b",
            "config": {"source": "device", "device": "d", "resource": "t", "interval": 0},
        },
        400,
    ),
    ({"bucket": "b", "config": {"source": "api"}, "retention": {"period": -1}}, 400),
    ({"bucket": "b", "config": {"source": "api"}, "retention": {"unit": "eons"}}, 400),
    ({"bucket": "b", "config": {"source": "api"}, "colour": "red"}, 400),
    ({"bucket": "b", "config": {"source": "api"}, "enabled": "yes"}, 400),
    (["not", "an", "object"], 400),
]


async def test_errors(http: aiohttp.ClientSession, server: TestServer) -> None:
    for body, expected in BAD_CREATES:
        status, answer = await api_call(http, server, "POST", "/v1/users/alice/buckets", body)
        assert_error(status, answer, expected)
    status, answer = await api_call(http, server, "POST", "/v1/users/alice/buckets", raw="{nope")
    assert_error(status, answer, 400)
    await make_bucket(http, server)
    status, answer = await api_call(
        http,
        server,
        "POST",
        "/v1/users/alice/buckets",
        {"bucket": "temps", "config": {"source": "api"}},
    )
    assert_error(status, answer, 409)
    for method, path in [
        ("GET", "/v1/users/alice/buckets/nope"),
        ("PUT", "/v1/users/alice/buckets/nope"),
        ("DELETE", "/v1/users/alice/buckets/nope"),
        ("POST", "/v1/users/alice/buckets/nope/data"),
        ("GET", "/v1/users/alice/buckets/nope/data"),
        ("GET", "/v1/users/alice/buckets/nope/exports"),
        ("GET", "/v1/users/alice/buckets/temps/exports/not-an-export.csv"),
    ]:
        status, answer = await api_call(http, server, method, path, {"name": "x"})
        assert_error(status, answer, 404)
    data = "/v1/users/alice/buckets/temps/data"
    for query in [
        "sort=up",
        "items=-1",
        "min_ts=x",
        "min_ts=5&max_ts=4",
        "agg=1mo",
        "agg=5m&agg_type=median",
    ]:
        status, answer = await api_call(http, server, "GET", f"{data}?{query}")
        assert_error(status, answer, 400)
    status, answer = await api_call(http, server, "POST", data, {"t": 1, "ts": "yesterday"})
    assert_error(status, answer, 400)
    status, answer = await api_call(http, server, "POST", data, [])
    assert_error(status, answer, 400)
    status, answer = await api_call(http, server, "POST", data, raw="")
    assert_error(status, answer, 400)
    status, answer = await api_call(http, server, "POST", data, {"blob": "x" * 20_000})
    assert_error(status, answer, 413)
    status, answer = await api_call(
        http, server, "PUT", "/v1/users/alice/buckets/temps", {"bucket": "other"}
    )
    assert_error(status, answer, 400)
    # a disabled bucket refuses writes
    await api_call(http, server, "PUT", "/v1/users/alice/buckets/temps", {"enabled": False})
    status, answer = await api_call(http, server, "POST", data, {"t": 1})
    assert_error(status, answer, 409)
    status, answer = await api_call(http, server, "GET", "/v1/users/alice/buckets", token="garbage")
    assert_error(status, answer, 401)
    status, rows = await api_call(http, server, "GET", data)
    assert (status, rows) == (200, [])


async def test_users_are_isolated(http: aiohttp.ClientSession, server: TestServer) -> None:
    await make_bucket(http, server)
    bob = server.issue_token(user="bob")
    status, body = await api_call(http, server, "GET", "/v1/users/bob/buckets", token=bob)
    assert (status, body) == (200, [])
    for method, path in [
        ("GET", "/v1/users/alice/buckets"),
        ("GET", "/v1/users/alice/buckets/temps"),
        ("GET", "/v1/users/alice/buckets/temps/data"),
        ("POST", "/v1/users/alice/buckets/temps/data"),
        ("DELETE", "/v1/users/alice/buckets/temps"),
    ]:
        status, body = await api_call(http, server, method, path, {"t": 1}, token=bob)
        assert_error(status, body, 403)
    status, body = await api_call(http, server, "GET", "/v1/users/bob/buckets/temps", token=bob)
    assert_error(status, body, 404)
    # bob's own bucket of the same id is another bucket
    status, _ = await api_call(
        http,
        server,
        "POST",
        "/v1/users/bob/buckets",
        {"bucket": "temps", "config": {"source": "api"}},
        token=bob,
    )
    assert status == 200
    await api_call(
        http, server, "POST", "/v1/users/bob/buckets/temps/data", {"who": "bob"}, token=bob
    )
    status, rows = await api_call(http, server, "GET", "/v1/users/alice/buckets/temps/data")
    assert (status, rows) == (200, [])


async def test_token_permissions(http: aiohttp.ClientSession, server: TestServer) -> None:
    await make_bucket(http, server)
    status, body = await api_call(
        http,
        server,
        "POST",
        "/v1/users/alice/tokens",
        {
            "token": "reader",
            "name": "reader",
            "enabled": True,
            "allow": {"Bucket": {"temps": ["ReadBucket", "ReadBucketConfig"]}},
        },
    )
    assert status == 200, body
    reader = body["access_token"]
    status, _ = await api_call(
        http, server, "GET", "/v1/users/alice/buckets/temps/data", token=reader
    )
    assert status == 200
    status, _ = await api_call(http, server, "GET", "/v1/users/alice/buckets/temps", token=reader)
    assert status == 200
    status, body = await api_call(
        http, server, "POST", "/v1/users/alice/buckets/temps/data", {"t": 1}, token=reader
    )
    assert_error(status, body, 403)
    status, body = await api_call(
        http, server, "DELETE", "/v1/users/alice/buckets/temps", token=reader
    )
    assert_error(status, body, 403)


async def test_aggregation(http: aiohttp.ClientSession, server: TestServer) -> None:
    await make_bucket(http, server)
    rows = [
        {"t": v, "ts": ts}
        for ts, v in [(0, 1), (30_000, 3), (59_999, 8), (60_000, 10), (150_000, -2)]
    ]
    rows.append({"label": "no numbers", "ts": 150_001})
    await api_call(http, server, "POST", "/v1/users/alice/buckets/temps/data", rows)
    data = "/v1/users/alice/buckets/temps/data?agg=1m"
    expected = {
        "mean": [4.0, 10, -2],
        "count": [3, 1, 1],
        "min": [1, 10, -2],
        "max": [8, 10, -2],
        "sum": [12, 10, -2],
        "spread": [7, 0, 0],
    }
    for agg_type, values in expected.items():
        status, body = await api_call(http, server, "GET", f"{data}&agg_type={agg_type}")
        assert status == 200
        assert [r["ts"] for r in body] == [0, 60_000, 120_000]
        assert [r["val"]["t"] for r in body] == values, agg_type
    status, body = await api_call(http, server, "GET", f"{data}&sort=desc&items=2")
    assert [r["ts"] for r in body] == [120_000, 60_000]


async def test_exports(http: aiohttp.ClientSession, server: TestServer) -> None:
    await make_bucket(http, server)
    rows = [
        {"cmd": "err", "device": "test", "err": 35, "ts": 1721080835304},
        {"device": 'say "hi"', "ok": True, "nested": {"a": 1}, "ts": 1721080892305},
    ]
    await api_call(http, server, "POST", "/v1/users/alice/buckets/temps/data", rows)
    url = f"{server.ws_url}/v2/users/alice/events"
    async with http.ws_connect(url, headers={"Authorization": f"Bearer {server.token}"}) as ws:
        await ws.send_json({"event": "bucket_export_completed"})
        assert "registered" in await ws.receive_json(timeout=5)
        status, made = await api_call(
            http,
            server,
            "POST",
            "/v1/users/alice/buckets/temps/exports",
            {"data_type": "csv", "max_ts": 1721080900000},
        )
        assert status == 200
        event = await ws.receive_json(timeout=5)
    assert event["event"] == "bucket_export_completed"
    assert (event["bucket"], event["file"], event["data_type"]) == ("temps", made["file"], "csv")
    assert event["url"] == f"/v1/users/alice/buckets/temps/exports/{made['file']}"
    headers = {"Authorization": f"Bearer {server.token}"}
    async with http.get(server.http_url + event["url"], headers=headers) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/csv"
        csv = await resp.text()
    assert csv.splitlines() == [
        '"cmd";"device";"err";"nested";"ok";"ts"',
        '"err";"test";35;;;"2024-07-15T22:00:35.304Z"',
        ';"say ""hi""";;"{""a"":1}";true;"2024-07-15T22:01:32.305Z"',
    ]
    status, made = await api_call(
        http,
        server,
        "POST",
        "/v1/users/alice/buckets/temps/exports",
        {"data_type": "json", "timestamp_format": "milliseconds", "min_ts": 1721080835305},
    )
    status, body = await api_call(
        http, server, "GET", f"/v1/users/alice/buckets/temps/exports/{made['file']}"
    )
    assert body == [
        {"ts": 1721080892305, "val": {"device": 'say "hi"', "ok": True, "nested": {"a": 1}}}
    ]
    status, listed = await api_call(http, server, "GET", "/v1/users/alice/buckets/temps/exports")
    assert [e["data_type"] for e in listed] == ["csv", "json"]
    status, _ = await api_call(
        http, server, "DELETE", f"/v1/users/alice/buckets/temps/exports/{made['file']}"
    )
    assert status == 200
    status, body = await api_call(
        http, server, "DELETE", f"/v1/users/alice/buckets/temps/exports/{made['file']}"
    )
    assert_error(status, body, 404)
    status, body = await api_call(
        http, server, "POST", "/v1/users/alice/buckets/temps/exports", {"data_type": "arff"}
    )
    assert_error(status, body, 400)


# ------------------------------------------------------- WRITE_BUCKET from devices


async def login(server: TestServer) -> RawPeer:
    """Log refdev1 in over a raw socket and answer the server's DESCRIBE."""
    peer = await RawPeer.open(server.tcp_port)
    await peer.send(
        Message.build(MessageType.CONNECT, stream_id=1, payload=["alice", "refdev1", "s3cret"])
    )
    assert (await peer.receive()).type == MessageType.OK
    describe = await peer.receive()
    assert describe.type == MessageType.DESCRIBE
    await peer.send(Message.build(MessageType.OK, stream_id=describe.stream_id, payload={}))
    return peer


async def reply_to(peer: RawPeer, stream_id: int) -> Message:
    while True:
        msg = await peer.receive()
        if msg.stream_id == stream_id and msg.type in (MessageType.OK, MessageType.ERROR):
            return msg


BUCKET_HEX = "8b" + b"dev_records".hex()  # PSON string "dev_records"


def linux_layout(stream_id: int | None, payload_hex: str = REF_TEMPERATURE_PAYLOAD) -> str:
    """[Linux] RUN: PARAMETERS = bucket id (PSON), PAYLOAD, RESOURCE = 5 (varint)."""
    sid = "" if stream_id is None else "08" + varint_hex(stream_id)
    return frame_hex(0x06, f"{sid} 12 {BUCKET_HEX} {payload_hex} 20 05")


def embedded_layout(stream_id: int | None, bucket_hex: str = BUCKET_HEX) -> str:
    """[Embedded] RUN: PARAMETERS = 5 (varint), PAYLOAD, RESOURCE = bucket id (PSON)."""
    sid = "" if stream_id is None else "08" + varint_hex(stream_id)
    return frame_hex(0x06, f"{sid} 10 05 {REF_TEMPERATURE_PAYLOAD} 22 {bucket_hex}")


async def test_write_bucket_both_layouts(http: aiohttp.ClientSession, server: TestServer) -> None:
    await make_bucket(http, server, "dev_records", config={"source": "write"})
    peer = await login(server)
    try:
        # the spec's example (section 11) with bucket "dev_records": exact bytes
        exact = (
            "06 2c 08 b4 24 12 8b 6465765f7265636f726473"
            " 1a c2 87 63656c73697573 40 0000ac41 88 68756d6964697479 1f 2d 20 05"
        )
        assert linux_layout(4660).replace(" ", "") == exact.replace(" ", "")
        await peer.send_hex(exact)
        reply = await reply_to(peer, 4660)
        assert reply.type == MessageType.OK
        await peer.send_hex(embedded_layout(4661))
        reply = await reply_to(peer, 4661)
        assert reply.type == MessageType.OK
        # without STREAM_ID: stored, and no answer at all
        await peer.send_hex(linux_layout(None))
        await peer.send_hex(embedded_layout(None))
        await peer.send_hex(embedded_layout(4662, bucket_hex="85" + b"nope!".hex()))
        reply = await reply_to(peer, 4662)  # the next reply is this one's: none came between
        assert reply.type == MessageType.ERROR
        assert reply.payload == {"error": "bucket not found"}
        # the writes without a reply commit on their own time
        async with asyncio.timeout(5):
            while len(rows := await server.server.buckets.read("alice", "dev_records")) < 4:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        status, rows = await api_call(
            http, server, "GET", "/v1/users/alice/buckets/dev_records/data"
        )
        assert status == 200
        assert [r["val"] for r in rows] == [RECORD] * 4
        assert all(abs(r["ts"] - rows[0]["ts"]) < 10_000 for r in rows)
    finally:
        await peer.close()


async def test_write_bucket_errors(http: aiohttp.ClientSession, server: TestServer) -> None:
    await make_bucket(http, server, "dev_records", config={"source": "write"})
    # bob's bucket of another id: refdev1 (alice's) cannot write into it
    bob = server.issue_token(user="bob")
    await api_call(
        http,
        server,
        "POST",
        "/v1/users/bob/buckets",
        {"bucket": "bobs", "config": {"source": "write"}},
        token=bob,
    )
    peer = await login(server)
    try:
        await peer.send_hex(embedded_layout(7, bucket_hex="84" + b"bobs".hex()))
        reply = await reply_to(peer, 7)
        assert (reply.type, reply.payload) == (MessageType.ERROR, {"error": "bucket not found"})
        long_value = "x" * 20_000  # over limits.bucket_record_max_bytes
        msg = Message.build(
            MessageType.RUN,
            stream_id=8,
            resource=5,
            parameters="dev_records",
            payload={"b": long_value},
        )
        await peer.send(msg)
        reply = await reply_to(peer, 8)
        assert reply.type == MessageType.ERROR
        assert "larger than" in reply.payload["error"]
        await peer.send(
            Message.build(MessageType.RUN, stream_id=9, resource=5, parameters="dev_records")
        )
        reply = await reply_to(peer, 9)
        assert reply.type == MessageType.ERROR
    finally:
        await peer.close()
    status, rows = await api_call(http, server, "GET", "/v1/users/bob/buckets/bobs/data", token=bob)
    assert (status, rows) == (200, [])


async def test_writes_are_batched_and_bounded(
    http: aiohttp.ClientSession, server: TestServer
) -> None:
    await make_bucket(http, server)
    buckets = server.server.buckets
    before = buckets.queue.transactions
    await asyncio.gather(*(buckets.write("alice", "temps", {"n": n}) for n in range(200)))
    assert buckets.queue.transactions - before < 20  # 200 writes, few transactions
    rows = await buckets.read("alice", "temps", items=1000)
    assert sorted(r["val"]["n"] for r in rows) == list(range(200))
    # a full queue refuses at once, and says so
    buckets.queue.max_rows = 3
    results = await asyncio.gather(
        *(buckets.write("alice", "temps", {"n": n}) for n in range(10)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, Exception)]
    assert refused and all("queue full" in str(r) for r in refused)
    stored = await buckets.read("alice", "temps", items=1000)
    assert len(stored) == 200 + len(results) - len(refused)


async def test_bucket_write_events(http: aiohttp.ClientSession, server: TestServer) -> None:
    await make_bucket(http, server, "dev_records", config={"source": "write"})
    url = f"{server.ws_url}/v2/users/alice/events"
    async with http.ws_connect(url, headers={"Authorization": f"Bearer {server.token}"}) as ws:
        await ws.send_json({"event": "bucket_write", "filters": {"bucket": "dev_records"}})
        assert "registered" in await ws.receive_json(timeout=5)
        await api_call(
            http, server, "POST", "/v1/users/alice/buckets/dev_records/data", {"t": 1, "ts": 1234}
        )
        event = await ws.receive_json(timeout=5)
        assert event == {
            "event": "bucket_write",
            "user": "alice",
            "ts": 1234,
            "bucket": "dev_records",
            "data": {"t": 1},
        }
        peer = await login(server)
        try:
            await peer.send_hex(linux_layout(None))
            event = await ws.receive_json(timeout=5)
        finally:
            await peer.close()
        assert (event["bucket"], event["data"]) == ("dev_records", RECORD)


# -------------------------------------------------------------------- retention


async def test_retention_by_age_and_count(http: aiohttp.ClientSession, server: TestServer) -> None:
    buckets = server.server.buckets
    now = 10**12 * 2
    await make_bucket(http, server, "aged", retention={"period": 1, "unit": "hours"})
    await make_bucket(http, server, "counted", retention={"max_records": 5})
    old = [RecordRow("alice", "aged", now - 7_200_000 + i, {"i": i}) for i in range(12)]
    fresh = [RecordRow("alice", "aged", now - 60_000 + i, {"i": i}) for i in range(3)]
    many = [RecordRow("alice", "counted", 1000 + i // 2, {"i": i}) for i in range(13)]
    await buckets.store.insert_records(old + fresh + many)
    buckets.retention.batch = 4  # several small batches
    buckets.retention._now_ms = lambda: now
    deleted = await buckets.retention.enforce()
    assert deleted == 12 + 8
    _, rows = await api_call(http, server, "GET", "/v1/users/alice/buckets/aged/data")
    assert [r["ts"] for r in rows] == [now - 60_000 + i for i in range(3)]
    _, rows = await api_call(http, server, "GET", "/v1/users/alice/buckets/counted/data")
    assert [r["val"]["i"] for r in rows] == [8, 9, 10, 11, 12]
    assert await buckets.retention.enforce() == 0


async def test_retention_runs_in_background(
    http: aiohttp.ClientSession, server: TestServer
) -> None:
    await make_bucket(http, server, "counted")
    buckets = server.server.buckets
    await buckets.store.insert_records(
        [RecordRow("alice", "counted", i, {"i": i}) for i in range(10)]
    )
    # setting a retention starts a pass: no need to wait for the minute
    await api_call(
        http, server, "PUT", "/v1/users/alice/buckets/counted", {"retention": {"max_records": 2}}
    )
    async with asyncio.timeout(5):
        while await buckets.store.count("alice", "counted") > 2:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    _, rows = await api_call(http, server, "GET", "/v1/users/alice/buckets/counted/data")
    assert [r["ts"] for r in rows] == [8, 9]
