"""The cxlsys command line and the helpers it runs (namespace runner, shims)."""
