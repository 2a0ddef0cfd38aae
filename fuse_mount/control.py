"""The daemon's control socket: modprobe, dmesg/journalctl and flush for shims and the CLI.

One JSON object per connection each way: ``{"cmd": "modprobe", "args": [...]}`` ->
``{"rc": 0, "out": "...", "err": "..."}``; the client is :func:`fuse_mount.client.request`.

``{"cmd": "mm", "fn": "alloc_candidates"|"set_mempolicy", "args": [...], "kwargs": {...}}`` calls the
allocation oracle (``system.mm``, :func:`cxlsys.kernel_api.mm_call`): ``{"rc": 0, "out": <the result
as JSON>}``, or ``rc`` 1 with ``"errno"`` (and ``"reason"``) for a kernel refusal, ``"exception"``
(``ValueError``/``TypeError``) and ``"message"`` for bad arguments; :func:`cxlsys.kernel_api.mm_raise`
turns a reply back into the result or the exception.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

from cxlsys.errors import KernelError
from cxlsys.kernel_api import MM_FUNCTIONS, mm_call
from cxlsys.sysfs import Sysfs
from cxlsys.treedump import SKIP, dump_model
from fuse_mount.client import recv_line


def serve(path: str, system, hooks: dict) -> threading.Thread:
    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    os.chmod(path, 0o600)
    srv.listen(16)

    def handle(conn):
        with conn:
            buf = recv_line(conn)
            try:
                req = json.loads(buf or b"{}")
                rep = dispatch(system, req, hooks)
            except Exception as e:  # the daemon must keep serving
                rep = {"rc": 1, "out": "", "err": f"cxlsys: {type(e).__name__}: {e}\n"}
            conn.sendall(json.dumps(rep).encode() + b"\n")

    def loop():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    t = threading.Thread(target=loop, daemon=True, name="cxlsys-control")
    t.start()
    return t


def dispatch(system, req: dict, hooks: dict) -> dict:
    after_change = hooks["changed"]
    cmd = req.get("cmd")
    args = req.get("args", [])
    if cmd == "modprobe":
        try:
            with system.lock:
                system.modprobe(args)
        except KernelError as e:
            return {"rc": 1, "out": "", "err": f"modprobe: ERROR: could not insert '{args[-1] if args else ''}': "
                                             f"{os.strerror(e.errno)} ({e.reason})\n"}
        after_change()
        return {"rc": 0, "out": "", "err": ""}
    if cmd == "dmesg":
        with system.lock:
            lines = system.klog.lines() if req.get("show", True) else []
            if req.get("clear"):
                system.klog.clear()
        return {"rc": 0, "out": "".join(x + "\n" for x in lines), "err": ""}
    if cmd == "journal":
        since = req.get("since")
        with system.lock:
            recs = [r for r in system.klog.records if since is None or r.wall >= since]
        host = os.uname().nodename
        out = [f"{time.strftime('%b %d %H:%M:%S', time.localtime(r.wall))} {host} kernel: {r.text}" for r in recs]
        if req.get("reverse"):
            out.reverse()
        return {"rc": 0, "out": "".join(x + "\n" for x in out), "err": ""}
    if cmd == "flush":
        with system.lock:
            system.flush_work()
        after_change()
        return {"rc": 0, "out": "", "err": ""}
    if cmd == "devsync":
        hooks["devsync"](req.get("root", "/dev"), req.get("style", "mknod"))
        return {"rc": 0, "out": "", "err": ""}
    if cmd == "dump":
        # a fresh projection of the model (nothing memoized): what the mount must be serving
        with system.lock:
            lines = dump_model(Sysfs(system), req.get("roots") or ["/sys/bus", "/sys/devices"],
                               skip=None if req.get("all") else SKIP)
        return {"rc": 0, "out": "".join(x + "\n" for x in lines), "err": ""}
    if cmd == "mm":
        fn = req.get("fn")
        if fn not in MM_FUNCTIONS:
            return {"rc": 2, "out": None, "err": f"cxlsys: mm: unknown function {fn!r}\n"}
        try:
            return {"rc": 0, "out": mm_call(system, fn, args, req.get("kwargs") or {}), "err": ""}
        except KernelError as e:
            return {"rc": 1, "out": None, "errno": e.errno, "reason": e.reason,
                    "err": f"cxlsys: mm: {fn}: {os.strerror(e.errno)} ({e.reason})\n"}
        except (ValueError, TypeError) as e:
            return {"rc": 1, "out": None, "exception": type(e).__name__, "message": str(e),
                    "err": f"cxlsys: mm: {fn}: {type(e).__name__}: {e}\n"}
    if cmd == "ping":
        return {"rc": 0, "out": "pong\n", "err": ""}
    return {"rc": 2, "out": "", "err": f"cxlsys: unknown control command {cmd!r}\n"}
