"""The ``cxlsys`` command line: ``main`` (argument parsing and subcommands), ``nsrun`` (``cxlsys run``:
a private mount namespace or the umockdev redirect), ``shim`` (modprobe/udevadm/journalctl/dmesg inside
a run) and ``show`` (rich output).  An adapter: it drives the model and the FUSE daemon, it holds no
model state of its own."""
