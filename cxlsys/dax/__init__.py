"""drivers/dax: the dax bus (bus.c), the CXL dax region driver (cxl.c), kmem (kmem.c)."""
