"""The FUSE adapter: serve a :class:`cxlsys.sysfs.Sysfs` projection at a mount point.

Thin by design (like ratarmount's FUSE layer): every operation is one call into the
projection.  Caching is the kernel's, made exact by invalidation: after each state
change the adapter diffs the tree and tells the kernel about every entry that
vanished or changed (``fuse_invalidate_path``); new entries need nothing because
negative lookups are never cached.  Attribute files are opened ``direct_io`` so
their contents are always read from the model.
"""
