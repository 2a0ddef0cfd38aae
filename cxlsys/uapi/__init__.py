"""include/uapi/linux: the user-space ABI headers the model's char devices speak (ioctl numbers,
command ids, struct layouts), as data a test or an adapter can import without the kernel side."""
