"""The projection inside pyfakefs: the model as ``/sys`` for Python code under test, in-process.

For provisioning helpers and policy code written in Python (``open``/``os.listdir``/``os.readlink``
on /sys): no FUSE, no root, no mount.  Every write to an attribute reaches the model's store (an
empty write, the truncate of an ``open(..., "w")``, is a no-op as on sysfs); a refused store raises
``OSError`` with the kernel's errno from the write's flush/close; after each store the fake tree is
brought up to date (entries, links, modes and contents).  Reads are the contents at the last refresh.

    def test_my_script(cxl_sysfs):          # the pytest fixture (cxlsys.pytest_plugin)
        my_script.provision("/sys/bus/cxl/devices/decoder0.3")
        assert cxl_sysfs.system ...
"""

from __future__ import annotations

import os
import stat

from cxlsys.errors import KernelError
from cxlsys.sysfs import S_DIR, S_FILE, S_LINK, Sysfs


class FakeSysfs:
    def __init__(self, fs, system, root: str = "/sys"):
        self.fs = fs                  # a pyfakefs FakeFilesystem (the `fs` fixture)
        self.system = system
        self.sysfs = Sysfs(system)
        self.root = root.rstrip("/")
        self.known: dict = {}
        self._busy = False
        fs.create_dir(self.root)
        self.refresh()

    def _full(self, p: str) -> str:
        return f"{self.root}/{p}"

    def _content(self, p: str, e) -> bytes:
        if not e.readable:
            return b""
        try:
            return self.sysfs.read(p)
        except KernelError:
            return b""

    def refresh(self) -> None:
        """Bring the fake tree up to date with the model."""
        self._busy = True
        try:
            entries = dict(self.sysfs.walk(""))
            snap = {p: (e.kind, e.mode, e.target) for p, e in entries.items()}
            gone = [p for p in self.known if snap.get(p) != self.known[p]]
            for p in sorted(gone, key=lambda x: x.count("/"), reverse=True):
                full = self._full(p)
                if self.fs.exists(full, check_link=True):     # a directory goes with its subtree
                    self.fs.remove_object(full)
            for p in sorted(snap, key=lambda x: x.count("/")):
                kind, mode, target = snap[p]
                full = self._full(p)
                if p in self.known and self.known[p] == snap[p]:
                    if kind == S_FILE:
                        self.fs.get_object(full).set_initial_contents(self._content(p, entries[p]))
                    continue
                if kind == S_DIR:
                    self.fs.create_dir(full, perm_bits=mode)
                elif kind == S_LINK:
                    self.fs.create_symlink(full, self.sysfs.readlink(p))
                else:
                    self.fs.create_file(full, st_mode=stat.S_IFREG | mode, contents=self._content(p, entries[p]),
                                        side_effect=self._store(p))
            self.known = snap
        finally:
            self._busy = False

    def _store(self, p: str):
        def side_effect(fake_file) -> None:
            data = fake_file.byte_contents or b""
            if self._busy or not data:
                return
            try:
                # open(..., "w") truncates: on sysfs a no-op, on tracefs ``trace`` the clear (pyfakefs
                # does not say how the file was opened; an "a" open is taken for a "w" one)
                self.sysfs.truncate(p)
                self.sysfs.write(p, data)
            except KernelError as e:
                raise OSError(e.errno, os.strerror(e.errno), self._full(p)) from None
            finally:
                self.refresh()
        return side_effect
