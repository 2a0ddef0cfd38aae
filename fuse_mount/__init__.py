"""The FUSE adapter: serve a :class:`cxlsys.sysfs.Sysfs` projection at a mount point.

Thin by design (like ratarmount's FUSE layer): every operation is one call into the
projection.  Caching is the kernel's, made exact by invalidation: after each state change the
adapter tells the kernel about every entry that vanished or changed and every file whose
contents it holds that reads differently (``Sysfs.sync``: ``stale`` and ``contents``), through
helper threads (``ops.Invalidator``); new entries need nothing because negative lookups are never
cached.  The sysfs mount lets the kernel keep file contents (no_open); ``/sys/kernel`` (tracefs,
debugfs) is a second mount whose contents are ``direct_io``.
"""
