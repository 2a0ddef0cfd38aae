"""drivers/nvdimm/security.c: the ``nmemN/security`` command protocol and the key handling behind
it — ``update``, ``disable``, ``disable_master``, ``freeze``, ``erase``, ``overwrite``,
``master_update``, ``master_erase`` with key serials, and the unlock the ``nvdimm`` driver tries at
probe (``request_key("encrypted", "nvdimm:<dimm id>")``).

Keys come from the nd bus type's key source (``sys.buses["nd"].keys``, :mod:`cxlsys.nvdimm.keys`):
the real kernel keyring as the daemon sees it, or an injected one.  What a dimm gets as the
passphrase is :func:`cxlsys.nvdimm.keys.encrypted_key_data` of the key (the stand-in for the
encrypted key's decrypted payload).  Functions return 0 or -errno like their C twins;
:func:`nvdimm_security_store` turns that into the store's KernelError.

The kernel is taken as built for ndctl's tests: CONFIG_NVDIMM_KEYS=y and
CONFIG_NVDIMM_SECURITY_TEST=y (the ``security`` file re-reads the hardware state on every show,
which ``cxl-security.sh``'s lock test relies on), ``key_revalidate=1`` (the module parameter's
default).
"""

from __future__ import annotations

import errno
from typing import Any, Optional

from cxlsys.errors import KernelError
from cxlsys.kstrto import kstrtouint, sysfs_streq, vsscanf
from cxlsys.nvdimm import nd
from cxlsys.nvdimm.bus import nvdimm_bus_type
from cxlsys.nvdimm.keys import Key, encrypted_key_data, encrypted_key_datalen
from cxlsys.nvdimm.nd import (
    NDD_INCOHERENT,
    NDD_SECURITY_OVERWRITE,
    NDD_WORK_PENDING,
    NVDIMM_MASTER,
    NVDIMM_PASSPHRASE_LEN,
    NVDIMM_SECURITY_DISABLED,
    NVDIMM_SECURITY_FROZEN,
    NVDIMM_SECURITY_OVERWRITE,
    NVDIMM_SECURITY_UNLOCKED,
    NVDIMM_USER,
    nvdimm_security_flags,
    test_bit,
)

CONFIG_NVDIMM_SECURITY_TEST = True
key_revalidate = True                 # module_param(key_revalidate, bool, 0444)

NVDIMM_BASE_KEY = 0
NVDIMM_NEW_KEY = 1
zero_key = bytes(NVDIMM_PASSPHRASE_LEN)

SEC_CMD_SIZE = 32
KEY_ID_SIZE = 10


def _dbg(nvdimm: Any, text: str) -> None:
    nvdimm.sys.klog.dev_dbg(nvdimm, text)


def _key_serial(key: Optional[Key]) -> int:
    return key.serial if key is not None else 0


def _key_data(key: Key) -> Optional[bytes]:
    """An encrypted key's payload, if it is a passphrase (decrypted_datalen == 32)."""
    if encrypted_key_datalen(key) != NVDIMM_PASSPHRASE_LEN:
        return None
    return encrypted_key_data(key)


def nvdimm_request_key(nvdimm: Any) -> tuple[Optional[Key], Optional[bytes]]:
    """The dimm's own key, ``encrypted`` ``nvdimm:<dimm_id>``, from the caller's keyrings."""
    desc = f"nvdimm:{nvdimm.dimm_id}"
    key = nvdimm_bus_type(nvdimm.sys).keys.request_key("encrypted", desc)
    if key is None:
        _dbg(nvdimm, "request_key() found no key")
        return None, None
    data = _key_data(key)
    if data is None:
        return None, None
    return key, data


def nvdimm_get_key_payload(nvdimm: Any) -> tuple[Optional[Key], bytes]:
    key, data = nvdimm_request_key(nvdimm)
    return key, data if data is not None else zero_key


def nvdimm_lookup_user_key(nvdimm: Any, id_: int, subclass: int) -> tuple[Optional[Key], Optional[bytes]]:
    key = nvdimm_bus_type(nvdimm.sys).keys.lookup_user_key(id_)
    if key is None or key.type != "encrypted":
        return None, None
    _dbg(nvdimm, f"nvdimm_lookup_user_key: key found: {key.serial:#x}")
    data = _key_data(key)
    if data is None:
        return None, None
    return key, data


def nvdimm_get_user_key_payload(nvdimm: Any, id_: int, subclass: int) -> tuple[Optional[Key], Optional[bytes]]:
    """Key ``id_``'s passphrase; id 0 means the zero key for a base key and nothing for a new one."""
    if id_ == 0:
        return None, (zero_key if subclass == NVDIMM_BASE_KEY else None)
    return nvdimm_lookup_user_key(nvdimm, id_, subclass)


def nvdimm_key_revalidate(nvdimm: Any) -> int:
    ops = nvdimm.sec_ops
    if ops.change_key is None:
        return -errno.EOPNOTSUPP
    _key, data = nvdimm_get_key_payload(nvdimm)
    # the same key as old and new: the hardware verifies it
    rc = ops.change_key(nvdimm, data, data, NVDIMM_USER)
    if rc < 0:
        return rc
    nvdimm.sec_flags = nvdimm_security_flags(nvdimm, NVDIMM_USER)
    return 0


def __nvdimm_security_unlock(nvdimm: Any) -> int:
    ops = nvdimm.sec_ops
    if ops is None or ops.unlock is None or not nvdimm.sec_flags:
        return -errno.EIO
    # the test build polls the "hardware" for the state it unlocks from
    if CONFIG_NVDIMM_SECURITY_TEST:
        nvdimm.sec_flags = nvdimm_security_flags(nvdimm, NVDIMM_USER)
    if test_bit(NVDIMM_SECURITY_DISABLED, nvdimm.sec_flags):
        return 0
    if test_bit(NDD_SECURITY_OVERWRITE, nvdimm.flags):
        _dbg(nvdimm, "Security operation in progress.")
        return -errno.EBUSY
    # unlocked pre-OS: send the key request_key() finds to the hardware for verification
    if test_bit(NVDIMM_SECURITY_UNLOCKED, nvdimm.sec_flags):
        if not key_revalidate:
            return 0
        return nvdimm_key_revalidate(nvdimm)
    key, data = nvdimm_get_key_payload(nvdimm)
    rc = ops.unlock(nvdimm, data)
    _dbg(nvdimm, f"key: {_key_serial(key)} unlock: {'success' if rc == 0 else 'fail'}")
    if rc == 0:
        nvdimm.flags |= 1 << NDD_INCOHERENT
    nvdimm.sec_flags = nvdimm_security_flags(nvdimm, NVDIMM_USER)
    return rc


def nvdimm_security_unlock(dev: Any) -> int:
    return __nvdimm_security_unlock(dev)


def check_security_state(nvdimm: Any) -> int:
    if test_bit(NVDIMM_SECURITY_FROZEN, nvdimm.sec_flags):
        _dbg(nvdimm, f"Incorrect security state: {nvdimm.sec_flags:#x}")
        return -errno.EIO
    if test_bit(NDD_SECURITY_OVERWRITE, nvdimm.flags):
        _dbg(nvdimm, "Security operation in progress.")
        return -errno.EBUSY
    return 0


def _ptype_name(pass_type: int) -> str:
    return "(master)" if pass_type == NVDIMM_MASTER else "(user)"


def security_disable(nvdimm: Any, keyid: int, pass_type: int) -> int:
    ops = nvdimm.sec_ops
    if ops is None or not nvdimm.sec_flags:
        return -errno.EOPNOTSUPP
    if pass_type == NVDIMM_USER and ops.disable is None:
        return -errno.EOPNOTSUPP
    if pass_type == NVDIMM_MASTER and ops.disable_master is None:
        return -errno.EOPNOTSUPP
    rc = check_security_state(nvdimm)
    if rc:
        return rc
    key, data = nvdimm_get_user_key_payload(nvdimm, keyid, NVDIMM_BASE_KEY)
    if data is None:
        return -errno.ENOKEY
    if pass_type == NVDIMM_MASTER:
        rc = ops.disable_master(nvdimm, data)
        _dbg(nvdimm, f"key: {_key_serial(key)} disable_master: {'success' if rc == 0 else 'fail'}")
        nvdimm.sec_ext_flags = nvdimm_security_flags(nvdimm, NVDIMM_MASTER)
    else:
        rc = ops.disable(nvdimm, data)
        _dbg(nvdimm, f"key: {_key_serial(key)} disable: {'success' if rc == 0 else 'fail'}")
        nvdimm.sec_flags = nvdimm_security_flags(nvdimm, NVDIMM_USER)
    return rc


def _sec_prepare(nvdimm: Any, op: str) -> tuple:
    """What update, erase and overwrite check first: the provider has ``op`` and the DIMM has
    security (EOPNOTSUPP otherwise), and check_security_state() lets a command in.  (ops, rc)."""
    ops = nvdimm.sec_ops
    if ops is None or getattr(ops, op) is None or not nvdimm.sec_flags:
        return ops, -errno.EOPNOTSUPP
    return ops, check_security_state(nvdimm)


def security_update(nvdimm: Any, keyid: int, new_keyid: int, pass_type: int) -> int:
    ops, rc = _sec_prepare(nvdimm, "change_key")
    if rc:
        return rc
    key, data = nvdimm_get_user_key_payload(nvdimm, keyid, NVDIMM_BASE_KEY)
    if data is None:
        return -errno.ENOKEY
    newkey, newdata = nvdimm_get_user_key_payload(nvdimm, new_keyid, NVDIMM_NEW_KEY)
    if newdata is None:
        return -errno.ENOKEY
    rc = ops.change_key(nvdimm, data, newdata, pass_type)
    _dbg(nvdimm, f"key: {_key_serial(key)} {_key_serial(newkey)} update{_ptype_name(pass_type)}: "
                 f"{'success' if rc == 0 else 'fail'}")
    if pass_type == NVDIMM_MASTER:
        nvdimm.sec_ext_flags = nvdimm_security_flags(nvdimm, NVDIMM_MASTER)
    else:
        nvdimm.sec_flags = nvdimm_security_flags(nvdimm, NVDIMM_USER)
    return rc


def security_erase(nvdimm: Any, keyid: int, pass_type: int) -> int:
    ops, rc = _sec_prepare(nvdimm, "erase")
    if rc:
        return rc
    if not test_bit(NVDIMM_SECURITY_UNLOCKED, nvdimm.sec_ext_flags) and pass_type == NVDIMM_MASTER:
        _dbg(nvdimm, "Attempt to secure erase in wrong master state.")
        return -errno.EOPNOTSUPP
    key, data = nvdimm_get_user_key_payload(nvdimm, keyid, NVDIMM_BASE_KEY)
    if data is None:
        return -errno.ENOKEY
    rc = ops.erase(nvdimm, data, pass_type)
    if rc == 0:
        nvdimm.flags |= 1 << NDD_INCOHERENT
    _dbg(nvdimm, f"key: {_key_serial(key)} erase{_ptype_name(pass_type)}: {'success' if rc == 0 else 'fail'}")
    nvdimm.sec_flags = nvdimm_security_flags(nvdimm, NVDIMM_USER)
    return rc


def security_overwrite(nvdimm: Any, keyid: int) -> int:
    ops, rc = _sec_prepare(nvdimm, "overwrite")
    if rc:
        return rc
    key, data = nvdimm_get_user_key_payload(nvdimm, keyid, NVDIMM_BASE_KEY)
    if data is None:
        return -errno.ENOKEY
    rc = ops.overwrite(nvdimm, data)
    if rc == 0:
        nvdimm.flags |= 1 << NDD_INCOHERENT
    _dbg(nvdimm, f"key: {_key_serial(key)} overwrite submission: {'success' if rc == 0 else 'fail'}")
    if rc == 0:
        nvdimm.flags |= (1 << NDD_SECURITY_OVERWRITE) | (1 << NDD_WORK_PENDING)
        nvdimm.sec_flags |= 1 << NVDIMM_SECURITY_OVERWRITE
        nvdimm.overwrite_work = nvdimm.sys.timers.add(0, lambda: nvdimm_security_overwrite_query(nvdimm))
    return rc


def __nvdimm_security_overwrite_query(nvdimm: Any) -> None:
    if not test_bit(NDD_WORK_PENDING, nvdimm.flags):
        return                          # cancelled
    tmo = nvdimm.sec_overwrite_tmo
    ops = nvdimm.sec_ops
    if ops is None or ops.query_overwrite is None or not nvdimm.sec_flags:
        return
    rc = ops.query_overwrite(nvdimm)
    if rc == -errno.EBUSY:
        tmo += 10
        nvdimm.overwrite_work = nvdimm.sys.timers.add(tmo, lambda: nvdimm_security_overwrite_query(nvdimm))
        nvdimm.sec_overwrite_tmo = min(15 * 60, tmo)
        return
    _dbg(nvdimm, "overwrite failed" if rc < 0 else "overwrite completed")
    nvdimm.sec_overwrite_tmo = 0
    nvdimm.flags &= ~((1 << NDD_SECURITY_OVERWRITE) | (1 << NDD_WORK_PENDING))
    nvdimm.sec_flags = nvdimm_security_flags(nvdimm, NVDIMM_USER)
    nvdimm.sec_ext_flags = nvdimm_security_flags(nvdimm, NVDIMM_MASTER)
    nvdimm.sysfs_notify("security")


def nvdimm_security_overwrite_query(nvdimm: Any) -> None:
    if nvdimm.registered:
        __nvdimm_security_overwrite_query(nvdimm)


# the commands of the ``security`` file and how many words each takes
(OP_FREEZE, OP_DISABLE, OP_DISABLE_MASTER, OP_UPDATE, OP_ERASE, OP_OVERWRITE, OP_MASTER_UPDATE,
 OP_MASTER_ERASE) = range(8)
ops = (("freeze", 1), ("disable", 2), ("disable_master", 2), ("update", 3), ("erase", 2), ("overwrite", 2),
       ("master_update", 3), ("master_erase", 2))


def nvdimm_security_store(nvdimm: Any, buf: str) -> None:
    """Parse and run one security command (KernelError with the kernel's errno on refusal)."""
    words = vsscanf(buf, f"%{SEC_CMD_SIZE}s %{KEY_ID_SIZE}s %{KEY_ID_SIZE}s")
    if len(words) < 1:
        raise KernelError(errno.EINVAL, f"{nvdimm.name}: security: no command")
    i = next((k for k, (name, _) in enumerate(ops) if sysfs_streq(words[0], name)), len(ops))
    if i >= len(ops):
        raise KernelError(errno.EINVAL, f"{nvdimm.name}: security: unknown command {words[0]!r}")
    nargs = ops[i][1]
    key = newkey = 0
    if nargs > 1:
        key = kstrtouint(words[1] if len(words) > 1 else "", 0)
    if nargs > 2:
        newkey = kstrtouint(words[2] if len(words) > 2 else "", 0)

    name = ops[i][0]
    if i == OP_FREEZE:
        _dbg(nvdimm, "freeze")
        rc = nd.nvdimm_security_freeze(nvdimm)
    elif i in (OP_DISABLE, OP_DISABLE_MASTER):
        _dbg(nvdimm, f"{name} {key}")
        rc = security_disable(nvdimm, key, NVDIMM_USER if i == OP_DISABLE else NVDIMM_MASTER)
    elif i in (OP_UPDATE, OP_MASTER_UPDATE):
        _dbg(nvdimm, f"{name} {key} {newkey}")
        rc = security_update(nvdimm, key, newkey, NVDIMM_USER if i == OP_UPDATE else NVDIMM_MASTER)
    elif i in (OP_ERASE, OP_MASTER_ERASE):
        _dbg(nvdimm, f"{name} {key}")
        if nvdimm.busy:
            raise KernelError(errno.EBUSY, f"{nvdimm.name}: Unable to secure erase while DIMM active.")
        rc = security_erase(nvdimm, key, NVDIMM_USER if i == OP_ERASE else NVDIMM_MASTER)
    else:
        _dbg(nvdimm, f"overwrite {key}")
        if nvdimm.busy:
            raise KernelError(errno.EBUSY, f"{nvdimm.name}: Unable to overwrite while DIMM active.")
        rc = security_overwrite(nvdimm, key)
    if rc < 0:
        raise KernelError(-rc, f"{nvdimm.name}: security: {name} failed")
