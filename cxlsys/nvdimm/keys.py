"""The kernel keys libnvdimm's security.c uses (security/keys: ``lookup_user_key()``,
``request_key()``, the ``encrypted`` key type's payload), as the model can reach them.

The kernel looks a key up with the *caller's* credentials and hands the hardware the *decrypted*
payload of an ``encrypted`` key (``struct encrypted_key_payload.decrypted_data``, 32 bytes for an
nvdimm passphrase).  The model runs in a daemon of the same uid as the caller, so
:class:`ProcessKeyrings` asks the running kernel for the key through ``keyctl(2)`` (ctypes; the only
system calls in ``cxlsys/``, besides the CLI and the interposer) — with the daemon's keyrings,
not the caller's:

* by serial (``"update <old> <new>"`` written to ``nmemN/security``): ``KEYCTL_DESCRIBE`` (type,
  description) and ``KEYCTL_READ`` (payload);
* by description (the unlock at ``nvdimm`` probe, ``request_key("encrypted", "nvdimm:<id>")``):
  ``KEYCTL_SEARCH`` in the thread, process and session keyrings, then in the user keyring (where
  ``ndctl`` puts its keys; the ndctl tests link ``@u`` into their session, so the caller would
  find them there too).

``KEYCTL_READ`` of an encrypted key returns its exported blob,
``"<format> <master-key> <datalen> <hex of iv, encrypted data and HMAC>"`` — never the decrypted
data, which only the kernel holds.  The blob is stable for a key (reading it twice, or reading a
key loaded back from a saved blob with ``keyctl add encrypted ... "load <blob>"``, gives the same
bytes: same iv, same data, same master key), so the model uses **SHA-256 of the blob** as the
32-byte passphrase it hands the mock device (:func:`encrypted_key_data`).  Limits of that choice:
two blobs of the same secret (re-encrypted after ``keyctl update`` of the master key, or exported
under another master key) are different passphrases here; a passphrase set by a real kernel on
real hardware means nothing to the model; the datalen check (``decrypted_datalen != 32`` ->
no key) reads the blob's third field.

Reading a key needs *read* permission; ndctl's keys give it to the possessor only (0x3f010000).
When the daemon does not possess the user keyring (its session does not link ``@u``),
:class:`ProcessKeyrings` links ``@u`` into the daemon's own process keyring once and retries —
a change to the daemon process only, never to the caller's keyrings.

:class:`MemoryKeyring` is an in-memory key source with the same interface, for tests.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import platform
from typing import Optional, Protocol

import attrs

from cxlsys.nvdimm.nd import NVDIMM_PASSPHRASE_LEN  # include/linux/libnvdimm.h

# include/uapi/linux/keyctl.h
KEY_SPEC_THREAD_KEYRING = -1
KEY_SPEC_PROCESS_KEYRING = -2
KEY_SPEC_SESSION_KEYRING = -3
KEY_SPEC_USER_KEYRING = -4
KEY_SPEC_USER_SESSION_KEYRING = -5
KEYCTL_DESCRIBE = 6
KEYCTL_LINK = 8
KEYCTL_SEARCH = 10
KEYCTL_READ = 11

NVDIMM_KEY_DESC_LEN = 22

_SYS_KEYCTL = {"x86_64": 250, "aarch64": 219, "arm64": 219, "ppc64le": 271, "s390x": 280, "riscv64": 219}


@attrs.frozen
class Key:
    """What the model learns about a key: its serial, ``type`` (``"encrypted"``, ``"user"``,
    ``"keyring"`` ...), description, and what ``KEYCTL_READ`` returns for it."""

    serial: int
    type: str
    description: str
    payload: bytes


class KeySource(Protocol):
    def lookup_user_key(self, serial: int) -> Optional[Key]:
        """``lookup_user_key(id, 0, KEY_NEED_SEARCH)``: the key with that serial, or None."""

    def request_key(self, key_type: str, description: str) -> Optional[Key]:
        """``request_key(type, description, "")``: a key of that type and description, or None."""


def to_key_serial(id_: int) -> int:
    """``key_serial_t`` (s32) of an unsigned value written to ``security``."""
    id_ &= 0xFFFFFFFF
    return id_ - (1 << 32) if id_ & 0x80000000 else id_


def encrypted_key_datalen(key: Key) -> Optional[int]:
    """``decrypted_datalen`` of an encrypted key, from its blob's third field."""
    fields = key.payload.split(b" ")
    if len(fields) < 4:
        return None
    try:
        return int(fields[2].decode("ascii"), 10)
    except (UnicodeDecodeError, ValueError):
        return None


def encrypted_key_data(key: Key) -> bytes:
    """The stand-in for ``epayload->decrypted_data``: SHA-256 of the blob (module docstring)."""
    return hashlib.sha256(key.payload).digest()


# ---------------------------------------------------------------- the running kernel's keyrings
class ProcessKeyrings:
    """The daemon's view of the kernel keyrings (``keyctl(2)`` through libc's ``syscall()``)."""

    def __init__(self) -> None:
        self._libc: Optional[ctypes.CDLL] = None
        self._linked_user = False

    def _keyctl(self, op: int, *args: int | ctypes.Array) -> int:
        nr = _SYS_KEYCTL.get(platform.machine())
        if nr is None:
            raise OSError(errno.ENOSYS, f"keyctl: unknown system call number on {platform.machine()}")
        if self._libc is None:
            self._libc = ctypes.CDLL(None, use_errno=True)
        cargs = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
        rc = self._libc.syscall(ctypes.c_long(nr), ctypes.c_long(op), *cargs)
        if rc < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return rc

    def _describe(self, serial: int) -> Optional[tuple[str, str]]:
        buf = ctypes.create_string_buffer(512)
        try:
            n = self._keyctl(KEYCTL_DESCRIBE, serial, buf, len(buf))
        except OSError:
            return None
        text = buf.raw[:max(n - 1, 0)].decode("utf-8", "replace")     # "type;uid;gid;perm;description"
        parts = text.split(";", 4)
        if len(parts) != 5:
            return None
        return parts[0], parts[4]

    def _read(self, serial: int) -> Optional[bytes]:
        for attempt in range(2):
            try:
                n = self._keyctl(KEYCTL_READ, serial, 0, 0)
                buf = ctypes.create_string_buffer(max(n, 1))
                n = self._keyctl(KEYCTL_READ, serial, buf, len(buf))
                return buf.raw[:n]
            except OSError as e:
                if e.errno != errno.EACCES or attempt or not self._possess_user_keyring():
                    return None
        return None

    def _possess_user_keyring(self) -> bool:
        """Link @u into the daemon's process keyring (once), so keys in it become possessed."""
        if self._linked_user:
            return False
        self._linked_user = True
        try:
            self._keyctl(KEYCTL_LINK, KEY_SPEC_USER_KEYRING, KEY_SPEC_PROCESS_KEYRING)
        except OSError:
            return False
        return True

    def _key(self, serial: int) -> Optional[Key]:
        d = self._describe(serial)
        if d is None:
            return None
        payload = self._read(serial) if d[0] != "keyring" else b""
        if payload is None:
            return None
        return Key(serial=serial, type=d[0], description=d[1], payload=payload)

    def lookup_user_key(self, serial: int) -> Optional[Key]:
        s = to_key_serial(serial)
        if s <= 0:
            return None              # a special keyring id (KEY_SPEC_*): never an encrypted key
        return self._key(s)

    def _search(self, key_type: str, description: str) -> Optional[Key]:
        t = ctypes.create_string_buffer(key_type.encode())
        d = ctypes.create_string_buffer(description.encode())
        for ring in (KEY_SPEC_THREAD_KEYRING, KEY_SPEC_PROCESS_KEYRING, KEY_SPEC_SESSION_KEYRING,
                     KEY_SPEC_USER_KEYRING):
            try:
                serial = self._keyctl(KEYCTL_SEARCH, ring, t, d, 0)
            except OSError:
                continue
            key = self._key(serial)
            if key is not None:
                return key
        return None

    def request_key(self, key_type: str, description: str) -> Optional[Key]:
        # a search skips keys the searcher may not search: ndctl's (possessor-only) when the
        # daemon does not possess @u; possessing it once makes them visible
        key = self._search(key_type, description)
        if key is None and self._possess_user_keyring():
            key = self._search(key_type, description)
        return key


# ---------------------------------------------------------------- an in-memory keyring (tests)
@attrs.define
class MemoryKeyring:
    """A key source without a kernel: keys added here are what lookups and requests find."""

    keys: dict = attrs.field(factory=dict)       # serial -> Key
    next_serial: int = 0x10000000

    def add(self, key_type: str, description: str, payload: bytes) -> int:
        serial = self.next_serial
        self.next_serial += 1
        self.keys[serial] = Key(serial=serial, type=key_type, description=description, payload=payload)
        return serial

    def add_encrypted(self, description: str, secret: bytes, master: str = "user:nvdimm-master",
                      datalen: int = NVDIMM_PASSPHRASE_LEN) -> int:
        """An encrypted key whose blob is ``enc32 <master> <datalen> <hex(secret)>`` (the shape
        ``KEYCTL_READ`` returns; the hex part stands for iv, ciphertext and HMAC)."""
        blob = b"enc32 %s %d %s" % (master.encode(), datalen, secret.hex().encode())
        return self.add("encrypted", description, blob)

    def unlink(self, serial: int) -> None:
        self.keys.pop(serial, None)

    def lookup_user_key(self, serial: int) -> Optional[Key]:
        return self.keys.get(to_key_serial(serial))

    def request_key(self, key_type: str, description: str) -> Optional[Key]:
        for k in self.keys.values():
            if k.type == key_type and k.description == description:
                return k
        return None
