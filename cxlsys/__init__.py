"""cxlsys: the Linux kernel's CXL core as a pure-Python model.

Layers (each a package or module a kernel developer can map to its C twin):

* ``cxlsys.base``  - drivers/base: devices, buses, drivers, attribute groups, modules, the
  platform bus, PCI, memory blocks and NUMA nodes; the change log the device core writes.
* ``cxlsys.mm``    - mm: memory_hotplug.c, memory-tiers.c.  ``cxlsys.kernel``: resource.c.
* ``cxlsys.cxl``   - drivers/cxl: acpi.c, mem.c, port.c, pci.c and core/{port,hdm,memdev,region,pmem}.c.
* ``cxlsys.dax``   - drivers/dax: bus.c, cxl.c, kmem.c.
* ``cxlsys.cxl_test``, ``cxlsys.machine`` - tools/testing/cxl: the mock platform a topology file
  (``cxlsys.topology``, presets in ``cxlsys/fixtures``) describes.
* ``cxlsys.system`` - one machine: the lock, the kernel log, load/unload of a topology.
* ``cxlsys.kernfs``, ``cxlsys.sysfs`` - kernfs node types and the projection of the model into
  paths, links, modes and errno.

Nothing in the model performs I/O on the host; adapters (``fuse_mount``, the pyfakefs fixture in
``cxlsys.fakefs``/``cxlsys.pytest_plugin``, the CLI in ``cxlsys.cli``) do.
"""

from cxlsys.errors import KernelError

__all__ = ["KernelError"]
