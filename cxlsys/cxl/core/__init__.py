"""drivers/cxl/core."""
