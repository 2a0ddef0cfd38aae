"""The control socket's client side: one JSON request, one JSON reply (see fuse_mount.control).

Deliberately free of the model: the shims (modprobe, udevadm, journalctl, dmesg) start fast."""

from __future__ import annotations

import json
import socket


def request(path: str, req: dict, timeout: float = 60.0) -> dict:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    with s:
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)
