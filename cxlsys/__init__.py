"""cxlsys: the Linux kernel's CXL core as a pure-Python model.

Layers (each a package or module a kernel developer can map to its C twin):

* ``cxlsys.base``  - drivers/base: devices, buses, drivers, attribute groups,
  platform bus, memory blocks and NUMA nodes.
* ``cxlsys.cxl``   - drivers/cxl: acpi.c, core/{port,hdm,memdev,region,pmem}.c,
  mem.c, port.c.
* ``cxlsys.dax``   - drivers/dax: bus.c, cxl.c, kmem.c.
* ``cxlsys.cxl_test`` - tools/testing/cxl: the mock platform a topology file describes.
* ``cxlsys.system`` - one machine: the lock, the kernel log, load/unload of a topology.
* ``cxlsys.sysfs`` - the projection of the model into paths, links, modes and errno.

Nothing in this package performs I/O on the host; adapters (``fuse_mount``, the
pyfakefs fixture, the CLI in ``tools``) do.
"""

from cxlsys.errors import KernelError  # noqa: F401
