"""drivers/cxl: the CXL core (``core/``) and its drivers (acpi, mem, port, pmem)."""
