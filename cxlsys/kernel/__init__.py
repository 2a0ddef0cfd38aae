"""kernel/: the twins of the core kernel's own files (``kernel/resource.c``: the iomem resource tree)."""
