"""drivers/cxl/core/mbox.c (Linux 6.12): the CXL memory-device mailbox core.

The transport is the device's ``mbox.mbox_send(cmd)`` (:class:`cxlsys.cxl.cxlmem.CxlMailbox`):
cxl_pci's doorbell protocol, or the cxl_test mock.  On top of it this module implements

* :func:`cxl_internal_send_cmd` — the kernel's own commands: payload-size limit (E2BIG), the
  transport's errno, the device's return code turned into an errno, the minimum-output check (EIO);
* the user ABI behind ``/dev/cxl/memN`` (include/uapi/linux/cxl_mem.h): :func:`cxl_query_cmd` and
  :func:`cxl_send_cmd` with the validation of :func:`cxl_validate_cmd_from_user`;
* probe-time discovery: :func:`cxl_enumerate_cmds` (the Command Effects Log decides which commands
  are enabled), :func:`cxl_dev_state_identify`, :func:`cxl_mem_create_range_info`,
  :func:`cxl_set_timestamp`, :func:`cxl_poison_state_init`;
* event records (:func:`cxl_mem_get_event_records`), the poison list (:func:`cxl_mem_get_poison`)
  and sanitize (:func:`cxl_mem_sanitize`), reported through the trace events of
  :mod:`cxlsys.cxl.core.trace` when that module is present.

Errors are raised as :class:`~cxlsys.errors.KernelError` where the C returns ``-errno``.

Build configuration modelled: ``CONFIG_CXL_MEM_RAW_COMMANDS=n`` (Debian's, and the default), so the
RAW command id exists in the ABI but its table slot is empty and sending it is refused (EPERM).
"""

from __future__ import annotations

import errno
import struct
import time
import weakref
from typing import TYPE_CHECKING, Any, Optional

import attrs

from cxlsys.cxl import cxlmem as M
from cxlsys.errors import KernelError
from cxlsys.uapi import cxl_mem as U

if TYPE_CHECKING:  # pragma: no cover
    from cxlsys.cxl.core.memdev import CxlMemdev
    from cxlsys.kernel.uaccess import UserMemory

ULLONG_MAX = (1 << 64) - 1
CONFIG_CXL_MEM_RAW_COMMANDS = False

CXL_CMD_FLAG_FORCE_ENABLE = 1 << 0      # enabled even when the CEL does not list it
VAR = M.CXL_VARIABLE_PAYLOAD


@attrs.define(frozen=True)
class CxlMemCommand:
    """struct cxl_mem_command: the uAPI info, the opcode, and the driver-internal flags."""

    info: U.CxlCommandInfo
    opcode: int
    flags: int = 0


def _cmd(name: str, size_in: int, size_out: int, flags: int = 0) -> tuple[int, CxlMemCommand]:
    cid = U.CXL_MEM_COMMAND_ID[name]
    return cid, CxlMemCommand(U.CxlCommandInfo(cid, 0, size_in, size_out), getattr(M, f"CXL_MBOX_OP_{name}"), flags)


_TABLE = dict([
    _cmd("IDENTIFY", 0, 0x43, CXL_CMD_FLAG_FORCE_ENABLE),
    *([_cmd("RAW", VAR, VAR)] if CONFIG_CXL_MEM_RAW_COMMANDS else []),
    _cmd("GET_SUPPORTED_LOGS", 0, VAR, CXL_CMD_FLAG_FORCE_ENABLE),
    _cmd("GET_FW_INFO", 0, 0x50),
    _cmd("GET_PARTITION_INFO", 0, 0x20),
    _cmd("GET_LSA", 0x8, VAR),
    _cmd("GET_HEALTH_INFO", 0, 0x12),
    _cmd("GET_LOG", 0x18, VAR, CXL_CMD_FLAG_FORCE_ENABLE),
    _cmd("GET_LOG_CAPS", 0x10, 0x4),
    _cmd("CLEAR_LOG", 0x10, 0),
    _cmd("GET_SUP_LOG_SUBLIST", 0x2, VAR),
    _cmd("SET_PARTITION_INFO", 0x0A, 0),
    _cmd("SET_LSA", VAR, 0),
    _cmd("GET_ALERT_CONFIG", 0, 0x10),
    _cmd("SET_ALERT_CONFIG", 0xC, 0),
    _cmd("GET_SHUTDOWN_STATE", 0, 0x1),
    _cmd("SET_SHUTDOWN_STATE", 0x1, 0),
    _cmd("GET_SCAN_MEDIA_CAPS", 0x10, 0x4),
    _cmd("GET_TIMESTAMP", 0, 0x8),
])

# cxl_mem_commands[CXL_MEM_COMMAND_ID_MAX]: a slot per id; ids without an entry are all-zero (id 0)
_EMPTY = CxlMemCommand(U.CxlCommandInfo(), 0, 0)
cxl_mem_commands: tuple[CxlMemCommand, ...] = tuple(_TABLE.get(i, _EMPTY) for i in range(U.CXL_MEM_COMMAND_ID_MAX))

# Opcodes RAW never passes (they need the kernel to coordinate: firmware activation, partition and
# LSA changes, shutdown state, the kernel-managed poison and scan-media lists)
cxl_disabled_raw_commands = (
    M.CXL_MBOX_OP_ACTIVATE_FW, M.CXL_MBOX_OP_SET_PARTITION_INFO, M.CXL_MBOX_OP_SET_LSA,
    M.CXL_MBOX_OP_SET_SHUTDOWN_STATE, M.CXL_MBOX_OP_SCAN_MEDIA, M.CXL_MBOX_OP_GET_SCAN_MEDIA,
    M.CXL_MBOX_OP_GET_POISON, M.CXL_MBOX_OP_INJECT_POISON, M.CXL_MBOX_OP_CLEAR_POISON,
)
# Command sets carrying plain-text security payloads: Sanitize, data-at-rest security, passthrough
security_command_sets = (0x44, 0x45, 0x46)
CXL_MBOX_OP_POISON_CMDS = 0x43

# debugfs cxl/mbox/raw_allow_all (a module bool in the kernel; one per System here)
_raw_allow_all: "weakref.WeakKeyDictionary[Any, bool]" = weakref.WeakKeyDictionary()


def cxl_raw_allow_all(sys) -> bool:
    return _raw_allow_all.get(sys, False)


def set_cxl_raw_allow_all(sys, value: bool) -> None:
    _raw_allow_all[sys] = value


def cxl_is_security_command(opcode: int) -> bool:
    return (opcode >> 8) in security_command_sets


def cxl_set_security_cmd_enabled(security: M.CxlSecurityState, opcode: int) -> None:
    bit = {
        M.CXL_MBOX_OP_SANITIZE: M.CXL_SEC_ENABLED_SANITIZE,
        M.CXL_MBOX_OP_SECURE_ERASE: M.CXL_SEC_ENABLED_SECURE_ERASE,
        M.CXL_MBOX_OP_GET_SECURITY_STATE: M.CXL_SEC_ENABLED_GET_SECURITY_STATE,
        M.CXL_MBOX_OP_SET_PASSPHRASE: M.CXL_SEC_ENABLED_SET_PASSPHRASE,
        M.CXL_MBOX_OP_DISABLE_PASSPHRASE: M.CXL_SEC_ENABLED_DISABLE_PASSPHRASE,
        M.CXL_MBOX_OP_UNLOCK: M.CXL_SEC_ENABLED_UNLOCK,
        M.CXL_MBOX_OP_FREEZE_SECURITY: M.CXL_SEC_ENABLED_FREEZE_SECURITY,
        M.CXL_MBOX_OP_PASSPHRASE_SECURE_ERASE: M.CXL_SEC_ENABLED_PASSPHRASE_SECURE_ERASE,
    }.get(opcode)
    if bit is not None:
        security.enabled_cmds.add(bit)


def cxl_is_poison_command(opcode: int) -> bool:
    return (opcode >> 8) == CXL_MBOX_OP_POISON_CMDS


def cxl_set_poison_cmd_enabled(poison: M.CxlPoisonState, opcode: int) -> None:
    bit = {
        M.CXL_MBOX_OP_GET_POISON: M.CXL_POISON_ENABLED_LIST,
        M.CXL_MBOX_OP_INJECT_POISON: M.CXL_POISON_ENABLED_INJECT,
        M.CXL_MBOX_OP_CLEAR_POISON: M.CXL_POISON_ENABLED_CLEAR,
        M.CXL_MBOX_OP_GET_SCAN_MEDIA_CAPS: M.CXL_POISON_ENABLED_SCAN_CAPS,
        M.CXL_MBOX_OP_SCAN_MEDIA: M.CXL_POISON_ENABLED_SCAN_MEDIA,
        M.CXL_MBOX_OP_GET_SCAN_MEDIA: M.CXL_POISON_ENABLED_SCAN_RESULTS,
    }.get(opcode)
    if bit is not None:
        poison.enabled_cmds.add(bit)


def cxl_mem_find_command(opcode: int) -> Optional[CxlMemCommand]:
    return next((c for c in cxl_mem_commands if c.opcode == opcode), None)


def cxl_mem_opcode_to_name(opcode: int) -> Optional[str]:
    c = cxl_mem_find_command(opcode)
    return U.cxl_command_names[c.info.id] if c is not None else None


def _opname(opcode: int) -> str:
    return cxl_mem_opcode_to_name(opcode) or f"opcode {opcode:#06x}"


def _mbox_of(x) -> M.CxlMailbox:
    return x.mbox if isinstance(x, M.CxlMemdevState) else x


def _host_log(mbox: M.CxlMailbox, text: str, level: str = "debug") -> None:
    """dev_dbg()/dev_err() on the mailbox's host device."""
    host: Any = mbox.host
    sys = getattr(host, "sys", None)
    if sys is not None:
        sys.klog.log(f"{host.driver_name_for_log()} {host.name}: {text}", level)


def _out(cmd: M.CxlMboxCmd, n: int) -> bytes:
    """The first ``n`` bytes of the output buffer (what the device wrote, zero beyond it)."""
    data = bytes(cmd.payload_out[: min(n, max(cmd.size_out, 0))])
    return data + bytes(n - len(data))


# ----------------------------------------------------------------------------- kernel-internal send

def cxl_internal_send_cmd(mbox: M.CxlMailbox | M.CxlMemdevState, cmd: M.CxlMboxCmd) -> int:
    """Send a kernel command; 0 when both the transport and the device succeeded.

    KernelError: E2BIG (payload beyond the mailbox), the transport's errno, the device's return
    code as an errno (cxl_mbox_cmd_rc2errno; a background-started command counts as success), EIO
    when a sized output came back shorter than ``min_out`` (or than ``size_out`` without one)."""
    mb = _mbox_of(mbox)
    if cmd.size_in > mb.payload_size or cmd.size_out > mb.payload_size:
        raise KernelError(errno.E2BIG, f"{_opname(cmd.opcode)}: payload exceeds the {mb.payload_size}-byte mailbox")
    out_size, min_out = cmd.size_out, cmd.min_out
    rc = mb.mbox_send(cmd)
    if rc == -errno.EIO:         # EIO is reserved for the size check below: a transport never says it
        _host_log(mb, f"WARNING: Bad return code: -EIO from {_opname(cmd.opcode)}", "warn")
        rc = -errno.ENXIO
    if rc:
        raise KernelError(-rc if rc < 0 else errno.EIO, f"{_opname(cmd.opcode)}: mailbox transport failed")
    if cmd.return_code not in (M.CXL_MBOX_CMD_RC_SUCCESS, M.CXL_MBOX_CMD_RC_BACKGROUND):
        raise KernelError(M.cxl_mbox_cmd_rc2errno(cmd),
                          f"{_opname(cmd.opcode)}: device error {cmd.return_code}: {M.cxl_mbox_cmd_rc2str(cmd)}")
    if not out_size:
        return 0
    if min_out == 0:
        min_out = out_size
    if cmd.size_out < min_out:
        raise KernelError(errno.EIO, f"{_opname(cmd.opcode)}: {cmd.size_out} output bytes, at least {min_out} expected")
    return 0


# ----------------------------------------------------------------------------- user commands

def cxl_mem_raw_command_allowed(sys, opcode: int) -> bool:
    if not CONFIG_CXL_MEM_RAW_COMMANDS:
        return False
    if cxl_raw_allow_all(sys):
        return True
    if cxl_is_security_command(opcode):
        return False
    return opcode not in cxl_disabled_raw_commands


def cxl_payload_from_user_allowed(opcode: int, payload_in: bytes) -> bool:
    """Input payloads the driver refuses to pass on (the immediate partition change, clearing any
    log but the vendor debug log)."""
    if opcode == M.CXL_MBOX_OP_SET_PARTITION_INFO:
        flags = payload_in[8] if len(payload_in) > 8 else 0
        if flags & M.CXL_SET_PARTITION_IMMEDIATE_FLAG:
            return False
    elif opcode == M.CXL_MBOX_OP_CLEAR_LOG:
        return payload_in[:16] == M.DEFINE_CXL_VENDOR_DEBUG_UUID
    return True


def cxl_mbox_cmd_ctor(mds: M.CxlMemdevState, opcode: int, in_size: int, out_size: int, in_payload: int,
                      uaccess: UserMemory) -> M.CxlMboxCmd:
    payload_in = b""
    if in_size:
        payload_in = uaccess.copy_from_user(in_payload, in_size)      # vmemdup_user: EFAULT
        if not cxl_payload_from_user_allowed(opcode, payload_in):
            raise KernelError(errno.EBUSY, f"{_opname(opcode)}: input payload not allowed")
    size_out = mds.payload_size if out_size == VAR else out_size
    return M.CxlMboxCmd(opcode=opcode, payload_in=payload_in, size_out=size_out)


def cxl_to_mem_cmd_raw(mds: M.CxlMemdevState, send: U.CxlSendCommand) -> CxlMemCommand:
    if send.raw_rsvd:
        raise KernelError(errno.EINVAL, "RAW command: reserved field set")
    if send.out_size > mds.payload_size:
        raise KernelError(errno.EINVAL, f"RAW command: out.size {send.out_size} exceeds the mailbox")
    sys = getattr(mds.host, "sys", None)
    if not cxl_mem_raw_command_allowed(sys, send.raw_opcode):
        raise KernelError(errno.EPERM, f"RAW command {send.raw_opcode:#06x} not allowed "
                          "(CONFIG_CXL_MEM_RAW_COMMANDS is not set)")
    _host_log(mds.mbox, "WARNING: raw command path used", "warn")
    return CxlMemCommand(U.CxlCommandInfo(U.CXL_MEM_COMMAND_ID_RAW, 0, send.in_size, send.out_size), send.raw_opcode)


def cxl_to_mem_cmd(mds: M.CxlMemdevState, send: U.CxlSendCommand) -> CxlMemCommand:
    c = cxl_mem_commands[send.id]
    info = c.info
    name = U.cxl_command_names[send.id]
    if send.flags & ~U.CXL_MEM_COMMAND_FLAG_MASK:
        raise KernelError(errno.EINVAL, f"{name}: unknown flags {send.flags:#x}")
    if send.rsvd:
        raise KernelError(errno.EINVAL, f"{name}: reserved field set")
    if send.in_rsvd or send.out_rsvd:
        raise KernelError(errno.EINVAL, f"{name}: in.rsvd / out.rsvd set")
    if info.id not in mds.enabled_cmds:
        raise KernelError(errno.ENOTTY, f"{name}: not enabled for this device")
    if info.id in mds.exclusive_cmds:
        raise KernelError(errno.EBUSY, f"{name}: claimed for exclusive kernel use")
    if info.size_in != VAR and info.size_in != send.in_size:
        raise KernelError(errno.ENOMEM, f"{name}: in.size {send.in_size}, the command takes {info.size_in}")
    if info.size_out != VAR and send.out_size < info.size_out:
        raise KernelError(errno.ENOMEM, f"{name}: out.size {send.out_size}, the command returns {info.size_out}")
    return CxlMemCommand(U.CxlCommandInfo(info.id, info.flags, send.in_size, send.out_size), c.opcode)


def cxl_validate_cmd_from_user(mds: M.CxlMemdevState, send: U.CxlSendCommand, uaccess: UserMemory) -> M.CxlMboxCmd:
    """A command from CXL_MEM_SEND_COMMAND, checked and built (ENOTTY, EINVAL, ENOMEM, EPERM, EBUSY)."""
    if send.id == 0 or send.id >= U.CXL_MEM_COMMAND_ID_MAX:
        raise KernelError(errno.ENOTTY, f"command id {send.id} out of range")
    if send.in_size > mds.payload_size:
        raise KernelError(errno.EINVAL, f"in.size {send.in_size} exceeds the {mds.payload_size}-byte mailbox")
    if send.id == U.CXL_MEM_COMMAND_ID_RAW:
        mem_cmd = cxl_to_mem_cmd_raw(mds, send)
    else:
        mem_cmd = cxl_to_mem_cmd(mds, send)
    return cxl_mbox_cmd_ctor(mds, mem_cmd.opcode, mem_cmd.info.size_in, mem_cmd.info.size_out,
                             send.in_payload, uaccess)


def cxl_query_cmd(cxlmd: CxlMemdev, q: int, uaccess: UserMemory) -> int:
    """CXL_MEM_QUERY_COMMANDS: ``n_commands == 0`` asks for the count; otherwise up to that many
    struct cxl_command_info, in id order, flagged ENABLED / EXCLUSIVE for this device."""
    mds = cxlmd.cxlds
    assert mds is not None
    (n_commands,) = struct.unpack("<I", uaccess.copy_from_user(q, 4))
    if n_commands == 0:
        uaccess.copy_to_user(q, struct.pack("<I", len(cxl_mem_commands)))
        return 0
    for j, cmd in enumerate(cxl_mem_commands):
        info = attrs.evolve(cmd.info)
        if info.id in mds.enabled_cmds:
            info.flags |= U.CXL_MEM_COMMAND_FLAG_ENABLED
        if info.id in mds.exclusive_cmds:
            info.flags |= U.CXL_MEM_COMMAND_FLAG_EXCLUSIVE
        uaccess.copy_to_user(q + U.CXL_MEM_QUERY_COMMANDS_HDR.size + j * U.CXL_COMMAND_INFO.size, info.pack())
        if j + 1 == n_commands:
            break
    return 0


def handle_mailbox_cmd_from_user(mds: M.CxlMemdevState, cmd: M.CxlMboxCmd, out_payload: int, send: U.CxlSendCommand,
                                 uaccess: UserMemory) -> None:
    """Run a validated user command; the device's return code goes back in ``retval``, not as an errno."""
    _host_log(mds.mbox, f"Submitting {_opname(cmd.opcode)} command for user (opcode {cmd.opcode:#x}, "
                        f"size {cmd.size_in:#x})")
    rc = mds.mbox.mbox_send(cmd)
    if rc:
        raise KernelError(-rc if rc < 0 else errno.EIO, f"{_opname(cmd.opcode)}: mailbox transport failed")
    if cmd.size_out:
        if cmd.size_out > send.out_size:
            _host_log(mds.mbox, "WARNING: Invalid return size", "warn")
        uaccess.copy_to_user(out_payload, _out(cmd, cmd.size_out))
    send.out_size = cmd.size_out
    send.retval = cmd.return_code


def cxl_send_cmd(cxlmd: CxlMemdev, s: int, uaccess: UserMemory) -> int:
    """CXL_MEM_SEND_COMMAND: validate, run, copy the output payload and the updated struct back."""
    mds = cxlmd.cxlds
    assert mds is not None
    send = U.CxlSendCommand.unpack(uaccess.copy_from_user(s, U.CXL_SEND_COMMAND.size))
    cmd = cxl_validate_cmd_from_user(mds, send, uaccess)
    handle_mailbox_cmd_from_user(mds, cmd, send.out_payload, send, uaccess)
    uaccess.copy_to_user(s, send.pack())
    return 0


# ----------------------------------------------------------------------------- command discovery

def cxl_xfer_log(mds: M.CxlMemdevState, uuid: bytes, size: int) -> bytes:
    """The log ``uuid`` read with GET_LOG in payload-size pieces; a short piece ends it."""
    out = bytearray()
    remaining, offset = size, 0
    while remaining:
        xfer = min(remaining, mds.payload_size)
        cmd = M.CxlMboxCmd(opcode=M.CXL_MBOX_OP_GET_LOG, payload_in=M.CXL_MBOX_GET_LOG.pack(uuid, offset, xfer),
                           size_out=xfer)
        try:
            cxl_internal_send_cmd(mds, cmd)
        except KernelError as e:
            # the valid length of the log can be smaller than the buffer
            if e.errno == errno.EIO and cmd.size_out < xfer:
                out += _out(cmd, cmd.size_out)
                offset += cmd.size_out
                break
            raise
        out += _out(cmd, xfer)
        remaining -= xfer
        offset += xfer
    return bytes(out[:offset])


def cxl_walk_cel(mds: M.CxlMemdevState, cel: bytes) -> None:
    """Enable every command the Command Effects Log lists that the driver knows."""
    for i in range(len(cel) // M.CXL_CEL_ENTRY.size):
        opcode, _effect = M.CXL_CEL_ENTRY.unpack_from(cel, i * M.CXL_CEL_ENTRY.size)
        cmd = cxl_mem_find_command(opcode)
        enabled = 0
        if cmd is not None:
            mds.mbox.enabled_cmds.add(cmd.info.id)
            enabled += 1
        if cxl_is_poison_command(opcode):
            cxl_set_poison_cmd_enabled(mds.poison, opcode)
            enabled += 1
        if cxl_is_security_command(opcode):
            cxl_set_security_cmd_enabled(mds.security, opcode)
            enabled += 1
        _host_log(mds.mbox, f"Opcode {opcode:#06x} {'enabled' if enabled else 'unsupported by driver'}")


def cxl_get_gsl(mds: M.CxlMemdevState) -> list[tuple[bytes, int]]:
    """GET_SUPPORTED_LOGS: [(uuid, size)] (at least the entry count must come back)."""
    cmd = M.CxlMboxCmd(opcode=M.CXL_MBOX_OP_GET_SUPPORTED_LOGS, size_out=mds.payload_size, min_out=2)
    cxl_internal_send_cmd(mds, cmd)
    buf = _out(cmd, mds.payload_size)
    (entries, _) = M.CXL_MBOX_GET_SUPPORTED_LOGS.unpack_from(buf, 0)
    out = []
    for i in range(entries):
        off = M.CXL_MBOX_GET_SUPPORTED_LOGS.size + i * M.CXL_GSL_ENTRY.size
        if off + M.CXL_GSL_ENTRY.size > len(buf):
            break
        out.append(M.CXL_GSL_ENTRY.unpack_from(buf, off))
    return out


def cxl_enumerate_cmds(mds: M.CxlMemdevState) -> None:
    """Read the CEL and enable the commands it lists (ENOENT: the device has no CEL)."""
    found = False
    for uuid, size in cxl_get_gsl(mds):
        _host_log(mds.mbox, f"Found LOG type {_uuid_str(uuid)} of size {size}")
        if uuid != M.DEFINE_CXL_CEL_UUID:
            continue
        cel = cxl_xfer_log(mds, uuid, size)
        cxl_walk_cel(mds, cel)
        for c in cxl_mem_commands:               # in case the CEL was bogus
            if c.flags & CXL_CMD_FLAG_FORCE_ENABLE:
                mds.mbox.enabled_cmds.add(c.info.id)
        found = True
    if not found:
        raise KernelError(errno.ENOENT, "no Command Effects Log")


def _uuid_str(b: bytes) -> str:
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def cxl_poison_state_init(mds: M.CxlMemdevState) -> None:
    """The kernel allocates the Get Poison List output buffer here (when the CEL enabled the
    command); the model's mailbox replies are bytes, so there is nothing to set up."""


def cxl_set_timestamp(mds: M.CxlMemdevState) -> None:
    """SET_TIMESTAMP to the host's real time; a device without it is fine."""
    ts = time.time_ns()
    cmd = M.CxlMboxCmd(opcode=M.CXL_MBOX_OP_SET_TIMESTAMP, payload_in=M.CXL_MBOX_SET_TIMESTAMP_IN.pack(ts))
    try:
        cxl_internal_send_cmd(mds, cmd)
    except KernelError:
        if cmd.return_code != M.CXL_MBOX_CMD_RC_UNSUPPORTED:
            raise
    mds.timestamp_ns = ts


def cxl_dev_state_identify(mds: M.CxlMemdevState) -> None:
    """IDENTIFY: capacities, partition alignment, LSA size, firmware revision, poison list depth."""
    if not mds.media_ready:
        return
    cmd = M.CxlMboxCmd(opcode=M.CXL_MBOX_OP_IDENTIFY, size_out=M.CXL_MBOX_IDENTIFY.size)
    cxl_internal_send_cmd(mds, cmd)
    ident = M.CXL_MBOX_IDENTIFY.unpack(_out(cmd, M.CXL_MBOX_IDENTIFY.size))
    mult = M.CXL_CAPACITY_MULTIPLIER
    mds.total_bytes = ident[M.ID_TOTAL_CAPACITY] * mult
    mds.volatile_only_bytes = ident[M.ID_VOLATILE_CAPACITY] * mult
    mds.persistent_only_bytes = ident[M.ID_PERSISTENT_CAPACITY] * mult
    mds.partition_align_bytes = ident[M.ID_PARTITION_ALIGN] * mult
    mds.lsa_size = ident[M.ID_LSA_SIZE]
    mds.firmware_version = ident[M.ID_FW_REVISION]
    if M.CXL_POISON_ENABLED_LIST in mds.poison.enabled_cmds:
        val = int.from_bytes(ident[M.ID_POISON_LIST_MAX_MER], "little")
        mds.poison.max_errors = min(val, M.CXL_POISON_LIST_MAX)


def cxl_mem_get_partition_info(mds: M.CxlMemdevState) -> None:
    """GET_PARTITION_INFO: the active (and next-boot) volatile/persistent split."""
    cmd = M.CxlMboxCmd(opcode=M.CXL_MBOX_OP_GET_PARTITION_INFO, size_out=M.CXL_MBOX_GET_PARTITION_INFO.size)
    cxl_internal_send_cmd(mds, cmd)
    av, ap, nv, _np = M.CXL_MBOX_GET_PARTITION_INFO.unpack(_out(cmd, M.CXL_MBOX_GET_PARTITION_INFO.size))
    mult = M.CXL_CAPACITY_MULTIPLIER
    mds.active_volatile_bytes = av * mult
    mds.active_persistent_bytes = ap * mult
    mds.next_volatile_bytes = nv * mult
    mds.next_persistent_bytes = nv * mult        # 6.12 reads next_volatile_cap here too (a kernel bug kept)


def add_dpa_res(mds: M.CxlMemdevState, res: M.CxlResource, start: int, size: int, name: str) -> None:
    res.name, res.start, res.size = name, start, size
    if size == 0:
        _host_log(mds.mbox, f"DPA({name}): no capacity")
        return
    parent = mds.dpa_res
    siblings = [r for r in (mds.ram_res, mds.pmem_res) if r is not res and r.size]
    if start < parent.start or start + size > parent.start + parent.size \
            or any(start <= r.end and start + size - 1 >= r.start for r in siblings):
        raise KernelError(errno.EBUSY, f"DPA({name}): failed to track [{start:#x}-{start + size - 1:#x}]")
    _host_log(mds.mbox, f"DPA({name}): [mem {start:#x}-{start + size - 1:#x}]")


def cxl_mem_create_range_info(mds: M.CxlMemdevState) -> None:
    """The device's DPA map: ``dpa_res`` with a ram partition first and pmem after it, from the
    capacities (no partition alignment) or from the active partition info."""
    if not mds.media_ready:
        mds.dpa_res = M.CxlResource("dpa")
        mds.ram_res = M.CxlResource("ram")
        mds.pmem_res = M.CxlResource("pmem")
        return
    mds.dpa_res = M.CxlResource("dpa", 0, mds.total_bytes)
    if mds.partition_align_bytes == 0:
        add_dpa_res(mds, mds.ram_res, 0, mds.volatile_only_bytes, "ram")
        add_dpa_res(mds, mds.pmem_res, mds.volatile_only_bytes, mds.persistent_only_bytes, "pmem")
        return
    try:
        cxl_mem_get_partition_info(mds)
    except KernelError:
        _host_log(mds.mbox, "Failed to query partition information", "err")
        raise
    add_dpa_res(mds, mds.ram_res, 0, mds.active_volatile_bytes, "ram")
    add_dpa_res(mds, mds.pmem_res, mds.active_volatile_bytes, mds.active_persistent_bytes, "pmem")


def cxl_memdev_state_create(host) -> M.CxlMemdevState:
    """A fresh memdev state for ``host`` (the PCI function or cxl_test platform device)."""
    return M.CxlMemdevState(host=host, mbox=M.CxlMailbox(host=host))


# ----------------------------------------------------------------------------- trace helpers

def _trace():
    """cxlsys.cxl.core.trace, or None while it does not exist (no tracepoints compiled in)."""
    try:
        from cxlsys.cxl.core import trace
    except ImportError:
        return None
    return trace


def cxl_event_trace_record(cxlmd, log: int, event_type: int, uuid: bytes, record: bytes) -> None:
    t = _trace()
    if t is None:
        return
    if event_type == M.CXL_CPER_EVENT_MEM_MODULE:
        t.trace_cxl_memory_module(cxlmd, log, record)
        return
    if event_type == M.CXL_CPER_EVENT_GENERIC:
        t.trace_cxl_generic_event(cxlmd, log, uuid, record)
        return
    # general media and DRAM records carry a DPA: annotate them with its region and HPA
    from cxlsys.cxl.core.memdev import cxl_dpa_to_hpa, cxl_dpa_to_region

    (phys,) = struct.unpack_from("<Q", record, M.CXL_EVENT_RECORD_PHYS_ADDR_OFFSET)
    dpa = phys & M.CXL_DPA_MASK
    cxlr = cxl_dpa_to_region(cxlmd, dpa)
    hpa = cxl_dpa_to_hpa(cxlr, cxlmd, dpa) if cxlr is not None else ULLONG_MAX
    if event_type == M.CXL_CPER_EVENT_GEN_MEDIA:
        t.trace_cxl_general_media(cxlmd, log, cxlr, hpa, record)
    elif event_type == M.CXL_CPER_EVENT_DRAM:
        t.trace_cxl_dram(cxlmd, log, cxlr, hpa, record)


def __cxl_event_trace_record(cxlmd, log: int, record: bytes) -> None:
    uuid = record[:16]
    ev_type = {M.CXL_EVENT_GEN_MEDIA_UUID: M.CXL_CPER_EVENT_GEN_MEDIA,
               M.CXL_EVENT_DRAM_UUID: M.CXL_CPER_EVENT_DRAM,
               M.CXL_EVENT_MEM_MODULE_UUID: M.CXL_CPER_EVENT_MEM_MODULE}.get(uuid, M.CXL_CPER_EVENT_GENERIC)
    cxl_event_trace_record(cxlmd, log, ev_type, uuid, record)


# ----------------------------------------------------------------------------- event records

def cxl_clear_event_record(mds: M.CxlMemdevState, log: int, records: list[bytes]) -> None:
    """CLEAR_EVENT_RECORD for the handles of ``records``, as many handles per command as fit."""
    hdr = M.CXL_MBOX_CLEAR_EVENT_PAYLOAD.size
    max_handles = M.CXL_CLEAR_EVENT_MAX_HANDLES
    if hdr + 2 * max_handles > mds.payload_size:
        max_handles = (mds.payload_size - hdr) // 2
    handles: list[int] = []

    def send(hs: list[int]) -> None:
        pl = M.CXL_MBOX_CLEAR_EVENT_PAYLOAD.pack(log, 0, len(hs), bytes(3)) + struct.pack(f"<{len(hs)}H", *hs)
        cxl_internal_send_cmd(mds, M.CxlMboxCmd(opcode=M.CXL_MBOX_OP_CLEAR_EVENT_RECORD, payload_in=pl))

    for rec in records:
        (h,) = struct.unpack_from("<H", rec, M.CXL_EVENT_RECORD_HANDLE_OFFSET)
        handles.append(h)
        _host_log(mds.mbox, f"Event log '{log}': Clearing {h}")
        if len(handles) == max_handles:
            send(handles)
            handles = []
    if handles:
        send(handles)


def cxl_mem_get_records_log(mds: M.CxlMemdevState, log: int) -> None:
    """Drain one event log: read, trace, clear, until a read returns no records."""
    cxlmd = mds.cxlmd
    rec_size = M.CXL_EVENT_RECORD_RAW_SIZE
    hdr = M.CXL_GET_EVENT_PAYLOAD.size
    while True:
        cmd = M.CxlMboxCmd(opcode=M.CXL_MBOX_OP_GET_EVENT_RECORD, payload_in=bytes([log]),
                           size_out=mds.payload_size, min_out=hdr)
        try:
            cxl_internal_send_cmd(mds, cmd)
        except KernelError as e:
            _host_log(mds.mbox, f"Event log '{log}': Failed to query event records : {-e.errno}", "err")
            return
        buf = _out(cmd, mds.payload_size)
        flags, _, _, _, _, nr_rec, _ = M.CXL_GET_EVENT_PAYLOAD.unpack_from(buf, 0)
        if not nr_rec:
            return
        records = [buf[hdr + i * rec_size: hdr + (i + 1) * rec_size].ljust(rec_size, b"\0") for i in range(nr_rec)]
        for rec in records:
            __cxl_event_trace_record(cxlmd, log, rec)
        if flags & M.CXL_GET_EVENT_FLAG_OVERFLOW:
            t = _trace()
            if t is not None:
                t.trace_cxl_overflow(cxlmd, log, buf[:hdr])
        try:
            cxl_clear_event_record(mds, log, records)
        except KernelError as e:
            _host_log(mds.mbox, f"Event log '{log}': Failed to clear events : {-e.errno}", "err")
            return


def cxl_mem_get_event_records(mds: M.CxlMemdevState, status: int) -> None:
    """Read, trace and clear every log the Event Status value ``status`` names (fatal first)."""
    _host_log(mds.mbox, f"Reading event logs: {status:x}")
    for bit, log in ((M.CXLDEV_EVENT_STATUS_FATAL, M.CXL_EVENT_TYPE_FATAL),
                     (M.CXLDEV_EVENT_STATUS_FAIL, M.CXL_EVENT_TYPE_FAIL),
                     (M.CXLDEV_EVENT_STATUS_WARN, M.CXL_EVENT_TYPE_WARN),
                     (M.CXLDEV_EVENT_STATUS_INFO, M.CXL_EVENT_TYPE_INFO)):
        if status & bit:
            cxl_mem_get_records_log(mds, log)


# ----------------------------------------------------------------------------- poison

CXL_POISON_TRACE_LIST, CXL_POISON_TRACE_INJECT, CXL_POISON_TRACE_CLEAR = range(3)
CXL_POISON_START_MASK = M.CXL_DPA_MASK


def trace_poison(cxlmd, cxlr, record: bytes, flags: int, overflow_ts: int, trace_type: int) -> None:
    """trace_cxl_poison() with the HPA the tracepoint computes from the record's DPA."""
    t = _trace()
    if t is None:
        return
    from cxlsys.cxl.core.memdev import cxl_dpa_to_hpa

    (addr,) = struct.unpack_from("<Q", record, 0)
    dpa = addr & CXL_POISON_START_MASK
    hpa = cxl_dpa_to_hpa(cxlr, cxlmd, dpa) if cxlr is not None else ULLONG_MAX
    t.trace_cxl_poison(cxlmd, cxlr, record, flags, overflow_ts, trace_type, hpa)


def cxl_mem_get_poison(cxlmd, offset: int, length: int, cxlr) -> None:
    """GET_POISON for [offset, offset + length), tracing each record; repeats while the device says
    there is more, up to the device's max error records."""
    mds = cxlmd.mds
    pi = M.CXL_MBOX_POISON_IN.pack(offset, length // M.CXL_POISON_LEN_MULT)
    hdr, rsz = M.CXL_MBOX_POISON_OUT.size, M.CXL_POISON_RECORD.size
    nr_records = 0
    while True:
        cmd = M.CxlMboxCmd(opcode=M.CXL_MBOX_OP_GET_POISON, payload_in=pi, size_out=mds.payload_size, min_out=hdr)
        cxl_internal_send_cmd(mds, cmd)
        buf = _out(cmd, mds.payload_size)
        flags, _, overflow_ts, count, _ = M.CXL_MBOX_POISON_OUT.unpack_from(buf, 0)
        for i in range(count):
            rec = buf[hdr + i * rsz: hdr + (i + 1) * rsz]
            if len(rec) < rsz:
                break
            trace_poison(cxlmd, cxlr, rec, flags, overflow_ts, CXL_POISON_TRACE_LIST)
        nr_records += count
        if nr_records >= mds.poison.max_errors:
            cxlmd.sys.klog.dev_dbg(cxlmd, f"Max Error Records reached: {nr_records}")
            break
        if not flags & M.CXL_POISON_FLAG_MORE:
            break


# ----------------------------------------------------------------------------- sanitize

def __cxl_mem_sanitize(mds: M.CxlMemdevState, opcode: int) -> None:
    if opcode not in (M.CXL_MBOX_OP_SANITIZE, M.CXL_MBOX_OP_SECURE_ERASE):
        raise KernelError(errno.EINVAL, f"opcode {opcode:#x} is not a sanitize command")
    sec_cmd = M.CxlMboxCmd(opcode=M.CXL_MBOX_OP_GET_SECURITY_STATE, size_out=4)
    try:
        cxl_internal_send_cmd(mds, sec_cmd)
    except KernelError as e:
        _host_log(mds.mbox, f"Failed to get security state : {-e.errno}", "err")
        raise
    (sec_out,) = struct.unpack("<I", _out(sec_cmd, 4))
    # user data must not be protected: no user passphrase (and, to erase, not locked)
    if sec_out & M.CXL_PMEM_SEC_STATE_USER_PASS_SET:
        raise KernelError(errno.EINVAL, "sanitize: a user passphrase is set")
    if opcode == M.CXL_MBOX_OP_SECURE_ERASE and sec_out & M.CXL_PMEM_SEC_STATE_LOCKED:
        raise KernelError(errno.EINVAL, "secure erase: the device is locked")
    cmd = M.CxlMboxCmd(opcode=opcode)
    try:
        cxl_internal_send_cmd(mds, cmd)
    except KernelError as e:
        _host_log(mds.mbox, f"Failed to sanitize device : {-e.errno}", "err")
        raise
    if opcode == M.CXL_MBOX_OP_SANITIZE and cmd.return_code == M.CXL_MBOX_CMD_RC_BACKGROUND:
        # cxl_pci's transport: a background sanitize is tracked until the device says it is done
        if mds.security.sanitize_active:
            raise KernelError(errno.EBUSY, "sanitize already in progress")
        mds.security.sanitize_active = True
        _host_log(mds.mbox, "Sanitization operation started")


def cxl_num_decoders_committed(port) -> int:
    return port.commit_end + 1


def cxl_mem_sanitize(cxlmd: CxlMemdev, opcode: int) -> None:
    """Sanitize or secure-erase the device: only with an endpoint and no committed decoder (EBUSY)."""
    mds = cxlmd.mds
    endpoint = cxlmd.endpoint
    if endpoint is None or cxl_num_decoders_committed(endpoint) != 0:
        why = "no endpoint port" if endpoint is None else f"{endpoint.name} has committed decoders"
        raise KernelError(errno.EBUSY, f"{cxlmd.name}: sanitize: {why}")
    __cxl_mem_sanitize(mds, opcode)


def cxl_mbox_sanitize_work(mds: M.CxlMemdevState) -> None:
    """The sanitize finished: drop ``sanitize_active`` and wake security/state pollers."""
    mds.security.sanitize_active = False
    node = mds.security.sanitize_node
    sys = getattr(mds.host, "sys", None)
    if sys is not None:
        if node is not None:
            sys.changes.notify(node)
        sys.changes.values()
    _host_log(mds.mbox, "Sanitization operation ended")


def cxl_mbox_background_done(mds: M.CxlMemdevState, opcode: int, return_code: int = M.CXL_MBOX_CMD_RC_SUCCESS) -> None:
    """The device's background-command-complete signal (cxl_pci's mailbox interrupt)."""
    if opcode == M.CXL_MBOX_OP_SANITIZE:
        cxl_mbox_sanitize_work(mds)
    else:
        _host_log(mds.mbox, f"Mailbox background operation ({opcode:#06x}) completed, rc {return_code}")
