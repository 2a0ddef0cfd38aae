"""The FUSE adapter: serve a :class:`cxlsys.sysfs.Sysfs` projection at a mount point.

Thin by design (like ratarmount's FUSE layer): every operation is one call into the
projection.  Caching is the kernel's, made exact by invalidation: after each state change the
adapter tells the kernel about every entry that vanished or changed, every name that appeared
where it had been told "no such entry", every directory that lists differently and every file
whose contents it holds that reads differently (``Sysfs.sync``: ``stale``, ``appeared``,
``contents``), through helper threads (``ops.Invalidator``).  Dentries are dropped by node id,
which libfuse's high-level API keeps to itself: ``wire.WireTap`` reads them off the device I/O.
The sysfs mount lets the kernel keep file contents (no_open) and listings; ``/sys/kernel``
(tracefs, debugfs) is a second mount whose contents are ``direct_io``.
"""
