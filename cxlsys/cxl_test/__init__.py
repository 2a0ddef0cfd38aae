"""tools/testing/cxl/test: the cxl_test mock devices (only the memory device, ``mem.c``, so far)."""

from cxlsys.cxl_test.mem import CxlMockMemDriver, MockMem, MockMemDevice, cxl_mock_mem_probe

__all__ = ["CxlMockMemDriver", "MockMem", "MockMemDevice", "cxl_mock_mem_probe"]
