"""Run the FUSE server for one System: mount, control socket, optional /dev node sync."""

from __future__ import annotations

import os
import stat
import threading
from typing import Optional

from cxlsys.sysfs import Sysfs
from fuse_mount import control
from fuse_mount.ops import SysfsOps, mfusepy

_created: dict = {}     # dev_root -> the node names sync_dev_nodes made there (so it removes only its own)


def sync_dev_nodes(system, dev_root: str) -> None:
    """Keep ``dev_root`` (the namespace's /dev) holding a node per model char device: a char node,
    or, for a device that takes ioctls, an empty regular file the ``cxlsys run`` interposer
    (cxlsys/cli/interpose.py) makes look like one (no host driver owns the model's majors)."""
    fs = Sysfs(system)
    want = fs.char_devices()
    ioctl_nodes = fs.ioctl_nodes()
    mine = _created.setdefault(dev_root, set())
    os.makedirs(os.path.join(dev_root, "cxl"), exist_ok=True)
    for name in sorted(mine - set(want)):
        try:
            os.unlink(os.path.join(dev_root, name))
        except FileNotFoundError:
            pass
        mine.discard(name)
    for name, (major, minor) in want.items():
        p = os.path.join(dev_root, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        rdev = os.makedev(major, minor)
        plain = name in ioctl_nodes
        mine.add(name)
        try:
            st = os.lstat(p)
            if (stat.S_ISREG(st.st_mode) if plain else stat.S_ISCHR(st.st_mode) and st.st_rdev == rdev):
                continue
            os.unlink(p)
        except FileNotFoundError:
            pass
        if plain:
            os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        else:
            os.mknod(p, 0o600 | stat.S_IFCHR, rdev)


def sync_umockdev_nodes(system, dev_root: str, ioctl_root: Optional[str] = None) -> None:
    """umockdev's way of faking /dev nodes for an LD_PRELOAD redirect: a plain file per node and a
    symlink ``.node/<path with / as _>`` -> ``c<major>:<minor>`` that its stat() wrapper turns into a
    char device.  Nodes that take ioctls live in ``ioctl_root`` instead, outside umockdev's
    ``/dev`` (umockdev would claim their ioctls for a handler socket of its own and exit without
    one): the ``cxlsys run`` interposer opens, stats and serves them (cxlsys/cli/interpose.py)."""
    fs = Sysfs(system)
    want = fs.char_devices()
    ioctl_nodes = fs.ioctl_nodes() if ioctl_root else set()
    node_dir = os.path.join(dev_root, ".node")
    os.makedirs(node_dir, exist_ok=True)
    mine = _created.setdefault(dev_root, set())
    for name in sorted(mine - set(want)):
        for p in (os.path.join(dev_root, name), os.path.join(node_dir, name.replace("/", "_")),
                  os.path.join(ioctl_root or dev_root, name)):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        mine.discard(name)
    for name, (major, minor) in want.items():
        mine.add(name)
        p = os.path.join(ioctl_root if ioctl_root and name in ioctl_nodes else dev_root, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        if not os.path.exists(p):
            os.close(os.open(p, os.O_WRONLY | os.O_CREAT, 0o600))
        link = os.path.join(node_dir, name.replace("/", "_"))
        target = None if name in ioctl_nodes else f"c{major}:{minor}"
        if target is not None and os.path.islink(link) and os.readlink(link) == target:
            continue
        if os.path.lexists(link):
            os.unlink(link)
        if target is not None:
            os.symlink(target, link)


def start_timer_thread(fs: Sysfs, changed) -> threading.Thread:
    """The kernel's timer softirq for the model: run delayed work (cxlsys/kernel/timer.py) when it
    is due (:meth:`Sysfs.run_timers`, under the system lock), then tell the mount what changed — a
    sanitize that ends while nobody reads still shows ``disabled`` to the next cached read."""
    wake = threading.Event()
    fs.on_timer_added(wake.set)

    def loop():
        while True:
            wait = fs.run_timers()
            changed()
            wake.wait(wait)
            wake.clear()

    t = threading.Thread(target=loop, daemon=True, name="cxlsys-timers")
    t.start()
    return t


KERNEL_DIR = "kernel"     # /sys/kernel: tracefs and debugfs, their own filesystems on a kernel too


def serve(system, mountpoint: str, control_path: Optional[str] = None, dev_root: Optional[str] = None,
          cache: bool = True, foreground: bool = True, allow_other: bool = False,
          kernel_cache: Optional[bool] = None) -> None:
    """Serve ``system`` at ``mountpoint`` until it is unmounted.  Two FUSE mounts: the sysfs tree,
    whose file contents the kernel keeps in its page cache (``kernel_cache``, the default unless
    ``CXLSYS_DIRECT_IO`` is set), and ``mountpoint/kernel`` (tracefs and debugfs: streams and
    files whose reads consume or move, as on a kernel) mounted on it once it answers, with every
    open and read answered here (direct_io)."""
    if kernel_cache is None:
        kernel_cache = not os.environ.get("CXLSYS_DIRECT_IO")
    fs = Sysfs(system)
    ops = SysfsOps(fs, cache=cache, kernel_cache=kernel_cache)
    kops = SysfsOps(Sysfs(system), cache=cache, kernel_cache=False, prefix=KERNEL_DIR)
    ops.peers, kops.peers = [kops], [ops]

    nodes_lock = threading.Lock()        # FUSE, timer and control threads may all sync at once

    def devsync(root: str, style: str = "mknod", ioctl_root: Optional[str] = None) -> None:
        def fn():
            with nodes_lock:
                if style == "umockdev":
                    sync_umockdev_nodes(system, root, ioctl_root)
                else:
                    sync_dev_nodes(system, root)
        fn()
        ops.on_change = fn

    if dev_root:
        devsync(dev_root)
    opts = dict(foreground=foreground, fsname="cxlsys", subtype="cxlsys", default_permissions=True,
                max_threads=16, nothreads=not os.environ.get("CXLSYS_THREADS"))
    if allow_other:
        opts["allow_other"] = True
    ready = threading.Lock()
    said: list = []

    def up() -> None:
        # both mounts answer: now the control socket appears (what a caller waits for)
        with ready:
            if not said:
                said.append(True)
                if control_path:
                    control.serve(control_path, system, {"changed": ops.sync, "devsync": devsync})

    def kernel_mount() -> None:
        try:
            mfusepy.FUSE(kops, os.path.join(mountpoint, KERNEL_DIR), raw_fi=True, **opts)
        except Exception as e:           # the sysfs mount still serves (/sys/kernel from it)
            with system.lock:
                system.klog.warn_exception(f"mount of /sys/{KERNEL_DIR}", e)
        finally:
            up()

    def started() -> None:
        # INIT came from the kernel: the sysfs mount is there; mount /kernel on it from a thread
        # (its mount(2) looks the directory up through this mount, whose loop must keep running)
        ops.on_init = None
        threading.Thread(target=kernel_mount, daemon=True, name="cxlsys-kernelfs").start()

    ops.on_init = started
    kops.on_init = up
    start_timer_thread(fs, ops.sync)
    try:
        mfusepy.FUSE(ops, mountpoint, raw_fi=True, **opts)
    finally:
        if control_path:
            control.remove(control_path)
