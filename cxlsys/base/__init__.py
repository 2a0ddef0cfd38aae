"""drivers/base: the driver model the CXL core is built on."""
