"""The control socket's client side: one JSON request, one JSON reply (see fuse_mount.control).

Deliberately free of the model: the shims (modprobe, udevadm, journalctl, dmesg) start fast."""

from __future__ import annotations

import json
import socket


def recv_line(sock: socket.socket) -> bytes:
    """One message: bytes up to and including a newline (or whatever came before the peer closed)."""
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def request(path: str, req: dict, timeout: float = 60.0) -> dict:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    with s:
        s.sendall(json.dumps(req).encode() + b"\n")
        return json.loads(recv_line(s))


def task_comm(pid: int) -> str:
    """The command name of task ``pid`` (``/proc/PID/comm``), as trace records show it."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "<...>"
