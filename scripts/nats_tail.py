#!/usr/bin/env python3
"""Print what arrives on NATS subjects, one line per message, decoded.

    scripts/nats_tail.py [--server nats://127.0.0.1:4222] [--seconds N] [SUBJECT ...]

Protobuf payloads are decoded with the project's schema (proto/agent.proto)."""
import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from lib.nats import NatsClient  # noqa: E402

TYPES = {"register": "AgentInfo", "heartbeat": "Heartbeat", "event": "Event",
         "metrics": "MetricsSample", "result": "CommandResult", "command": "Command"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="nats://127.0.0.1:4222")
    ap.add_argument("--seconds", type=float, default=0, help="stop after this long (0: until Ctrl-C)")
    ap.add_argument("subjects", nargs="*", default=["agent.>"])
    args = ap.parse_args()
    client = NatsClient(args.server)
    subs = [client.subscribe(s) for s in args.subjects]
    client.flush()
    deadline = time.monotonic() + args.seconds if args.seconds else None
    try:
        while deadline is None or time.monotonic() < deadline:
            for sub in subs:
                try:
                    msg = sub.next(timeout=0.1)
                except TimeoutError:
                    continue
                ct = msg.headers.get("Content-Type", "")
                if ct == "application/x-protobuf":
                    from lib import agentpb
                    kind = TYPES.get(msg.subject.split(".")[1], "")
                    body = json.dumps(agentpb.decode(kind, msg.data)) if kind else msg.data.hex()
                else:
                    body = msg.data.decode(errors="replace")
                print(f"{msg.subject} {body}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        client.close()


if __name__ == "__main__":
    main()
