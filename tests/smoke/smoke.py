"""Smoke test of chat-server with a third-party client (python-socketio).

Usage: smoke.py URL_NODE_1 URL_NODE_2
Alice connects to node 1 over HTTP long-polling (upgrading to WebSocket), Bob to node 2 over
WebSocket only; they chat through the cluster and check acks, events and error codes.
"""
import sys
import threading

import socketio

node1, node2 = sys.argv[1], sys.argv[2]
passed, failed = 0, 0


def check(name, condition, detail=""):
    global passed, failed
    if condition:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


alice = socketio.Client()
bob = socketio.Client()
bob_messages, bob_notices = [], []
got_message, got_notice = threading.Event(), threading.Event()


@bob.on("message")
def on_message(message):
    bob_messages.append(message)
    got_message.set()


@bob.on("notice")
def on_notice(notice):
    bob_notices.append(notice)
    got_notice.set()


alice.connect(node1, auth={"userId": "py-alice", "name": "Alice"}, wait_timeout=10)
bob.connect(node2, auth={"userId": "py-bob", "name": "Bob"}, transports=["websocket"], wait_timeout=10)

ack = bob.call("join", {"room": "lobby"}, timeout=10)
check("bob joins", ack.get("ok") is True and ack["chatter"] == {"id": "py-bob", "name": "Bob"}, ack)

ack = alice.call("join", {"room": "lobby"}, timeout=10)
online = sorted(m["id"] for m in ack.get("online", []))
check("alice joins and sees bob online", ack.get("ok") is True and online == ["py-alice", "py-bob"], ack)
check("bob is told alice came online",
      got_notice.wait(10) and bob_notices[0]["kind"] == "join" and bob_notices[0]["user"]["id"] == "py-alice",
      bob_notices)

ack = alice.call("message", {"room": "lobby", "text": "hello from python"}, timeout=10)
check("alice's message is acked", ack.get("ok") is True and ack["message"]["text"] == "hello from python", ack)
check("bob receives it on the other node",
      got_message.wait(10) and bob_messages[0]["from"]["id"] == "py-alice", bob_messages)

ack = alice.call("message", {"room": "elsewhere", "text": "x"}, timeout=10)
check("a room not joined is refused", ack.get("error", {}).get("code") == "not_in_room", ack)
ack = alice.call("message", {"room": "lobby", "text": 12}, timeout=10)
check("a non-string text is refused", ack.get("error", {}).get("code") == "bad_request", ack)

alice.disconnect()
bob.disconnect()
print(f"python smoke: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
