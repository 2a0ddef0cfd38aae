"""fuse_mount.wire.WireTap: what the kernel holds, read off the FUSE wire, and what it must forget.

The device I/O is faked (``_libc``): requests are bytes the test lays out as the kernel would
(struct fuse_in_header + payload), replies the iovecs libfuse would hand to writev."""

from __future__ import annotations

import ctypes
import struct
import threading

import pytest

wire = pytest.importorskip("fuse_mount.wire")

LOOKUP, OPENDIR, GETATTR = 1, 27, 3


class FakeDev:
    """/dev/fuse: the next request to read, the replies written."""

    def __init__(self):
        self.next = b""
        self.sent: list = []

    def read(self, fd, buf, size):
        ctypes.memmove(buf, self.next, len(self.next))
        return len(self.next)

    def writev(self, fd, iov, count):
        self.sent.append(b"".join(ctypes.string_at(iov[i].iov_base, iov[i].iov_len) for i in range(count)))
        return sum(iov[i].iov_len for i in range(count))

    def __getattr__(self, name):
        return getattr(wire._libc, name)


class Reply:
    """A reply's iovecs (kept alive while the tap reads them)."""

    def __init__(self, unique: int, error: int = 0, body: bytes = b""):
        self.head = ctypes.create_string_buffer(struct.pack("<IiQ", 16 + len(body), error, unique), 16)
        self.body = ctypes.create_string_buffer(body, max(1, len(body)))
        self.iov = (wire.iovec * 2)((ctypes.addressof(self.head), 16), (ctypes.addressof(self.body), len(body)))
        self.count = 2 if body else 1


def entry_out(nodeid: int) -> bytes:
    # nodeid, generation, entry_valid, attr_valid, entry_valid_nsec, attr_valid_nsec, then fuse_attr
    return struct.pack("<QQQQII", nodeid, 0, 86400, 86400, 0, 0) + bytes(88)


@pytest.fixture
def tap(monkeypatch):
    dev = FakeDev()
    monkeypatch.setattr(wire, "_libc", dev)
    model = {"devices", "devices/a", "devices/a/x"}
    t = wire.WireTap(lambda p: p.strip("/") in model, threading.RLock())
    t.dev, t.model = dev, model
    return t


def ask(tap, unique: int, op: int, parent: int, name: str = "") -> None:
    tap.dev.next = struct.pack("<IIQQIIIHH", 0, op, unique, parent, 0, 0, 0, 0, 0) + name.encode() + b"\0"
    buf = ctypes.create_string_buffer(8192)
    assert tap._read(3, ctypes.addressof(buf), 8192, None) == len(tap.dev.next)


def answer(tap, r: Reply) -> bytes:
    tap._writev(3, r.iov, r.count, None)
    return tap.dev.sent[-1]


def test_lookups_teach_node_ids_and_negative_entries(tap):
    ask(tap, 10, LOOKUP, 1, "devices")
    answer(tap, Reply(10, body=entry_out(2)))
    ask(tap, 11, LOOKUP, 2, "b")                        # no such entry: libfuse answers node id 0
    answer(tap, Reply(11, body=entry_out(0)))
    ask(tap, 12, LOOKUP, 2, "a")
    answer(tap, Reply(12, body=entry_out(3)))
    assert tap.node_of == {"": 1, "devices": 2, "devices/a": 3}
    assert tap.negative == {"devices": {"b": 2}}
    # "b" appears: the kernel forgets its negative entry (parent 2, name b), once
    assert tap.entry_targets({"devices/b"}, set()) == [(2, "b")]
    assert tap.entry_targets({"devices/b"}, set()) == []


def test_a_vanished_directory_is_forgotten_at_its_top_with_the_negatives_below(tap):
    for u, (parent, name, nid) in enumerate([(1, "devices", 2), (2, "a", 3), (3, "x", 4)]):
        ask(tap, u, LOOKUP, parent, name)
        answer(tap, Reply(u, body=entry_out(nid)))
    ask(tap, 9, LOOKUP, 3, "y")
    answer(tap, Reply(9, body=entry_out(0)))
    assert tap.entry_targets(set(), {"devices/a", "devices/a/x"}) == [(2, "a")]
    assert "devices/a" not in tap.node_of and tap.negative == {}


def test_a_reply_the_model_overtook_is_not_cached(tap):
    """Between the handler's answer and its reply the model changed (a timer, the control socket):
    the reply goes out with zero timeouts and nothing is recorded."""
    ask(tap, 10, LOOKUP, 1, "devices")
    answer(tap, Reply(10, body=entry_out(2)))
    ask(tap, 11, LOOKUP, 2, "b")
    tap.model.add("devices/b")                          # appeared after the handler said ENOENT
    sent = answer(tap, Reply(11, body=entry_out(0)))
    nodeid, _, entry_valid, attr_valid, ensec, ansec = struct.unpack_from("<QQQQII", sent, 16)
    assert (nodeid, entry_valid, attr_valid, ensec, ansec) == (0, 0, 0, 0, 0)
    assert tap.negative == {}
    ask(tap, 12, LOOKUP, 2, "a")
    tap.model.discard("devices/a")                      # vanished after the handler found it
    sent = answer(tap, Reply(12, body=entry_out(3)))
    assert struct.unpack_from("<QQQQ", sent, 16)[2:] == (0, 0) and "devices/a" not in tap.node_of


def test_opendir_replies_keep_the_listing_and_others_pass_untouched(tap):
    ask(tap, 20, OPENDIR, 2)
    sent = answer(tap, Reply(20, body=struct.pack("<QII", 7, 0, 0)))
    assert struct.unpack_from("<QI", sent, 16) == (7, wire.FOPEN_KEEP_CACHE | wire.FOPEN_CACHE_DIR)
    ask(tap, 21, GETATTR, 2)
    body = bytes(range(104))
    assert answer(tap, Reply(21, body=body))[16:] == body
    ask(tap, 22, LOOKUP, 2, "gone")
    assert answer(tap, Reply(22, error=-2)) == struct.pack("<IiQ", 16, -2, 22)   # an error: nothing learned
    assert tap.negative == {} and tap._pending == {}


def test_a_bug_while_reading_a_reply_is_logged_and_the_reply_still_goes_uncached(tap):
    seen: list = []
    tap._on_bug = seen.append

    def broken(path):
        raise RuntimeError("model bug")
    tap._exists = broken
    ask(tap, 10, LOOKUP, 1, "devices")
    sent = answer(tap, Reply(10, body=entry_out(2)))
    assert [str(e) for e in seen] == ["model bug"]
    assert struct.unpack_from("<QQQQ", sent, 16) == (2, 0, 0, 0)      # node id kept, timeouts zeroed
    assert tap.node_of == {"": 1}
