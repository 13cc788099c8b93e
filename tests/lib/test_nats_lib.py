"""Tests of tests/lib/nats.py against a real nats-server (and one fake peer
that splits protocol messages across reads)."""

import socket
import threading
import time

import pytest

from .nats import NatsClient, NatsServer, NoRespondersError, free_port


@pytest.fixture
def server():
    with NatsServer() as srv:
        yield srv


def test_pub_sub_with_headers(server):
    with NatsClient(server.url) as pub, NatsClient(server.url) as sub_client:
        sub = sub_client.subscribe("agent.event.c1")
        plain = sub_client.subscribe("agent.plain")
        sub_client.flush()
        pub.publish("agent.event.c1", b'{"uid":"u1"}',
                    headers={"Content-Type": "application/json", "Nats-Msg-Id": "u1-3"})
        pub.publish("agent.plain", b"no headers")
        pub.publish("agent.event.c1", b"", headers={"Nats-Msg-Id": "empty"}, reply="some.reply")
        pub.flush()
        m = sub.next(timeout=5)
        assert m.subject == "agent.event.c1"
        assert m.reply is None
        assert m.headers == {"Content-Type": "application/json", "Nats-Msg-Id": "u1-3"}
        assert m.data == b'{"uid":"u1"}'
        m2 = sub.next(timeout=5)
        assert m2.data == b"" and m2.reply == "some.reply" and m2.headers["Nats-Msg-Id"] == "empty"
        p = plain.next(timeout=5)
        assert p.headers == {} and p.data == b"no headers"
        with pytest.raises(TimeoutError):
            sub.next(timeout=0.2)


def test_large_payload_and_many_messages(server):
    with NatsClient(server.url) as nc:
        sub = nc.subscribe("big.>")
        nc.flush()
        blob = bytes(range(256)) * 2000  # 512000 bytes, arrives in many reads
        nc.publish("big.one", blob, headers={"Content-Type": "application/octet-stream"})
        for i in range(200):
            nc.publish(f"big.n{i}", str(i).encode())
        nc.flush()
        assert sub.next(5).data == blob
        got = [sub.next(5).data for _ in range(200)]
        assert got == [str(i).encode() for i in range(200)]


def test_queue_group_delivers_once(server):
    with NatsClient(server.url) as a, NatsClient(server.url) as b, NatsClient(server.url) as p:
        sa = a.subscribe("agent.command.c1", queue="collect-agent.c1")
        sb = b.subscribe("agent.command.c1", queue="collect-agent.c1")
        a.flush()
        b.flush()
        for i in range(30):
            p.publish("agent.command.c1", str(i).encode())
        p.flush()
        time.sleep(0.3)
        got = sa.drain() + sb.drain()
        assert sorted(int(m.data) for m in got) == list(range(30))


def test_request_reply_and_no_responders(server):
    with NatsClient(server.url) as responder, NatsClient(server.url) as requester:
        sub = responder.subscribe("svc.echo")
        responder.flush()

        def serve():
            m = sub.next(timeout=5)
            responder.publish(m.reply, b"echo:" + m.data, headers={"X-Seen": m.headers.get("X-In", "")})

        t = threading.Thread(target=serve)
        t.start()
        r = requester.request("svc.echo", b"hi", headers={"X-In": "1"}, timeout=5)
        t.join()
        assert r.data == b"echo:hi"
        assert r.headers["X-Seen"] == "1"
        with pytest.raises(NoRespondersError):
            requester.request("svc.nobody", b"x", timeout=5)


def test_restart_same_port():
    with NatsServer() as srv:
        port = srv.port
        nc = NatsClient(srv.url)
        nc.publish("x", b"1")
        nc.flush()
        srv.restart()
        assert srv.port == port and srv.running
        # The old connection is gone; the helper does not reconnect.
        deadline = time.monotonic() + 5
        while nc.is_connected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not nc.is_connected
        with pytest.raises(ConnectionError):
            nc.publish("x", b"2")
            nc.flush(timeout=1)
        nc.close()
        with NatsClient(srv.url) as nc2:
            s = nc2.subscribe("y")
            nc2.publish("y", b"after restart")
            assert s.next(5).data == b"after restart"
    assert not srv.running


def test_auth_token_and_user_password():
    with NatsServer(args=["--auth", "tok-1"]) as srv:
        with NatsClient(srv.url, token="tok-1") as nc:
            nc.flush()
        with pytest.raises(ConnectionError):
            NatsClient(srv.url, token="wrong")
    with NatsServer(args=["--user", "u", "--pass", "p"]) as srv:
        with NatsClient(srv.url, user="u", password="p") as nc:
            nc.flush()
        with NatsClient(f"nats://u:p@127.0.0.1:{srv.port}") as nc:
            nc.flush()
        with pytest.raises(ConnectionError):
            NatsClient(srv.url, user="u", password="nope")


def test_messages_split_across_reads():
    """A fake server dribbles an HMSG and a MSG a few bytes at a time."""
    port = free_port()
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", port))
    lsock.listen(1)
    payload = (b"HMSG a.b 1 r.1 44 49\r\nNATS/1.0\r\nContent-Type: application/json\r\n\r\nhello"
               b"\r\nMSG a.b 1 5\r\nworld\r\nPING\r\n")

    def fake():
        conn, _ = lsock.accept()
        with conn:
            conn.sendall(b'INFO {"server_id":"fake","headers":true,"max_payload":1048576}\r\n')
            buf = b""
            while b"PING\r\n" not in buf:
                buf += conn.recv(4096)
            conn.sendall(b"PONG\r\n")
            buf = b""
            while b"SUB a.b 1\r\n" not in buf:
                buf += conn.recv(4096)
            for i in range(0, len(payload), 3):
                conn.sendall(payload[i:i + 3])
                time.sleep(0.002)
            buf = b""
            while b"PONG\r\n" not in buf:  # our client answers the PING
                chunk = conn.recv(4096)
                if not chunk:
                    break
                buf += chunk
            seen.append(buf)

    seen = []
    t = threading.Thread(target=fake)
    t.start()
    try:
        with NatsClient(f"nats://127.0.0.1:{port}") as nc:
            sub = nc.subscribe("a.b")
            m = sub.next(5)
            assert m.subject == "a.b" and m.reply == "r.1"
            assert m.headers == {"Content-Type": "application/json"}
            assert m.data == b"hello"
            assert sub.next(5).data == b"world"
            t.join(5)
            assert seen and b"PONG\r\n" in seen[0]
    finally:
        lsock.close()
        t.join(5)
