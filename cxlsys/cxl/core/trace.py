"""drivers/cxl/core/trace.h (Linux 6.12): the ``cxl`` trace events and their ``trace_*`` calls.

Each event is a :class:`~cxlsys.kernel.trace.TraceEventCall`: ``TP_STRUCT__entry`` as data (so
``events/cxl/<event>/format`` gives the kernel's offsets, sizes and signedness), the ``print fmt``
the kernel's macros stringify to (``__entry`` -> ``REC``, ``BIT(n)`` -> ``((((1UL))) << (n))``,
enum names left as they are — 6.12 has no ``TRACE_DEFINE_ENUM`` for them), and ``TP_printk`` as a
function of the decoded entry with the kernel's ``__print_flags``/``__print_symbolic`` tables.

The ``trace_*`` functions are TP_fast_assign: they take the records as the device returns them
(the layouts below are include/cxl/event.h and cxlmem.h of 6.12, i.e. CXL 3.0 §8.2.9.2.1 and
§8.2.9.8.4.1) and emit through ``cxlmd.sys.tracing``:

* ``record``: a 128-byte Common Event Record — uuid (16), length, flags[3], handle,
  related handle, timestamp, maintenance operation class, 15 reserved, 80 bytes of data;
* the poison ``record``: 16 bytes, ``address`` (DPA in bits 63:6, source in 2:0) and
  ``length`` in 64-byte units;
* the overflow ``payload``: the Get Event Records output header (flags, overflow count,
  first/last overflow timestamps, record count).
"""

from __future__ import annotations

import struct

from cxlsys.cxl.cxlmem import (  # the layouts the core uses too
    CXL_DPA_MASK,
    CXL_EVENT_DRAM_UUID,
    CXL_EVENT_GEN_MEDIA_UUID,
    CXL_EVENT_MEM_MODULE_UUID,
    CXL_GET_EVENT_PAYLOAD,
    CXL_POISON_RECORD,
)
from cxlsys.kernel.trace import (
    TraceEventCall,
    ev_array,
    ev_field,
    ev_field_struct,
    ev_string,
    print_flags,
    print_hex,
    print_symbolic,
    print_uuid,
    s64,
    trace_add_event_call,
)

ULLONG_MAX = (1 << 64) - 1


def BIT(n: int) -> int:
    return 1 << n


def _bit_str(n: int) -> str:
    """How the kernel's BIT(n) reads once the preprocessor has expanded it."""
    return f"((((1UL))) << ({n}))"


# ================================================================ include/cxl/event.h (6.12), cxlmem.h
CXL_EVENT_RECORD_LENGTH = 128
CXL_EVENT_RECORD_DATA_LENGTH = 0x50
CXL_EVENT_GEN_MED_COMP_ID_SIZE = 0x10
CXL_EVENT_DER_CORRECTION_MASK_SIZE = 0x20
CXL_HEADERLOG_SIZE = 512
CXL_HEADERLOG_SIZE_U32 = CXL_HEADERLOG_SIZE // 4

# struct cxl_event_record_raw: uuid_t id + struct cxl_event_record_hdr
CXL_EVENT_RECORD_HDR = struct.Struct("<16sB3sHHQB15s")   # id, length, flags[3], handle, related_handle,
                                                         # timestamp, maint_op_class, reserved[15]
# struct cxl_event_media_hdr after the record header: phys_addr, descriptor, type, transaction_type,
# validity_flags[2], channel, rank
CXL_EVENT_MEDIA_HDR = struct.Struct("<QBBB2sBB")
CXL_EVENT_GEN_MEDIA_TAIL = struct.Struct("<3s16s46s")    # device[3], component_id[16], reserved[46]
CXL_EVENT_DRAM_TAIL = struct.Struct("<3sBB3s2s32s23s")   # nibble_mask[3], bank_group, bank, row[3], column[2],
                                                         # correction_mask[32], reserved[0x17]
# struct cxl_event_mem_module: event_type + struct cxl_get_health_info + reserved[0x3d]
CXL_EVENT_MEM_MODULE = struct.Struct("<BBBBB2s4s4s4s61s")
# struct cxl_get_event_payload header: flags, reserved, overflow_err_count, first/last overflow ts, record_count
# struct cxl_poison_record

assert CXL_EVENT_RECORD_HDR.size + CXL_EVENT_RECORD_DATA_LENGTH == CXL_EVENT_RECORD_LENGTH
assert CXL_EVENT_RECORD_HDR.size + CXL_EVENT_MEDIA_HDR.size + CXL_EVENT_GEN_MEDIA_TAIL.size == 128
assert CXL_EVENT_RECORD_HDR.size + CXL_EVENT_MEDIA_HDR.size + CXL_EVENT_DRAM_TAIL.size == 128
assert CXL_EVENT_RECORD_HDR.size + CXL_EVENT_MEM_MODULE.size == 128

# enum cxl_event_log_type
CXL_EVENT_TYPE_INFO, CXL_EVENT_TYPE_WARN, CXL_EVENT_TYPE_FAIL, CXL_EVENT_TYPE_FATAL, CXL_EVENT_TYPE_MAX = range(5)

# UUIDs of the record types the kernel decodes (uuid_t byte order)

# poison (cxlmem.h)
CXL_POISON_START_MASK = ((1 << 64) - 1) & ~0x3F         # GENMASK_ULL(63, 6)
CXL_POISON_SOURCE_MASK = 0x7                             # GENMASK(2, 0)
CXL_POISON_SOURCE_UNKNOWN = 0
CXL_POISON_SOURCE_EXTERNAL = 1
CXL_POISON_SOURCE_INTERNAL = 2
CXL_POISON_SOURCE_INJECTED = 3
CXL_POISON_SOURCE_VENDOR = 7
CXL_POISON_FLAG_MORE = BIT(0)
CXL_POISON_FLAG_OVERFLOW = BIT(1)
CXL_POISON_FLAG_SCANNING = BIT(2)
CXL_POISON_LEN_MULT = 64
# enum cxl_poison_trace_type
CXL_POISON_TRACE_LIST, CXL_POISON_TRACE_INJECT, CXL_POISON_TRACE_CLEAR = range(3)

# ================================================================ the flag / symbol tables of trace.h
CXL_RAS_UC_BITS = ((0, "Cache Data Parity Error"), (1, "Cache Address Parity Error"),
                   (2, "Cache Byte Enable Parity Error"), (3, "Cache Data ECC Error"),
                   (4, "Memory Data Parity Error"), (5, "Memory Address Parity Error"),
                   (6, "Memory Byte Enable Parity Error"), (7, "Memory Data ECC Error"),
                   (8, "REINIT Threshold Hit"), (9, "Received Unrecognized Encoding"),
                   (10, "Received Poison From Peer"), (11, "Receiver Overflow"),
                   (14, "Component Specific Error"), (15, "IDE Tx Error"), (16, "IDE Rx Error"))
CXL_RAS_CE_BITS = ((0, "Cache Data ECC Error"), (1, "Memory Data ECC Error"), (2, "CRC Threshold Hit"),
                   (3, "Retry Threshold"), (4, "Received Cache Poison From Peer"),
                   (5, "Received Memory Poison From Peer"), (6, "Received Error From Physical Layer"))
CXL_EVENT_LOG_TYPES = (("CXL_EVENT_TYPE_INFO", CXL_EVENT_TYPE_INFO, "Informational"),
                       ("CXL_EVENT_TYPE_WARN", CXL_EVENT_TYPE_WARN, "Warning"),
                       ("CXL_EVENT_TYPE_FAIL", CXL_EVENT_TYPE_FAIL, "Failure"),
                       ("CXL_EVENT_TYPE_FATAL", CXL_EVENT_TYPE_FATAL, "Fatal"))
CXL_EVENT_RECORD_FLAGS = ((2, "PERMANENT_CONDITION"), (3, "MAINTENANCE_NEEDED"), (4, "PERFORMANCE_DEGRADED"),
                          (5, "HARDWARE_REPLACEMENT_NEEDED"))
CXL_DPA_FLAGS_MASK = 0x3                                 # GENMASK(1, 0)
CXL_DPA_FLAGS = ((0, "VOLATILE"), (1, "NOT_REPAIRABLE"))
CXL_GMER_EVT_DESC = ((0, "UNCORRECTABLE_EVENT"), (1, "THRESHOLD_EVENT"), (2, "POISON_LIST_OVERFLOW"))
CXL_GMER_MEM_EVT_TYPES = (("0x00", 0x00, "ECC Error"), ("0x01", 0x01, "Invalid Address"),
                          ("0x02", 0x02, "Data Path Error"))
CXL_GMER_TRANS_TYPES = (("0x00", 0x00, "Unknown"), ("0x01", 0x01, "Host Read"), ("0x02", 0x02, "Host Write"),
                        ("0x03", 0x03, "Host Scan Media"), ("0x04", 0x04, "Host Inject Poison"),
                        ("0x05", 0x05, "Internal Media Scrub"), ("0x06", 0x06, "Internal Media Management"))
CXL_GMER_VALID = ((0, "CHANNEL"), (1, "RANK"), (2, "DEVICE"), (3, "COMPONENT"))
CXL_DER_MEM_EVT_TYPES = (("0x00", 0x00, "ECC Error"), ("0x01", 0x01, "Scrub Media ECC Error"),
                         ("0x02", 0x02, "Invalid Address"), ("0x03", 0x03, "Data Path Error"))
CXL_DER_VALID = ((0, "CHANNEL"), (1, "RANK"), (2, "NIBBLE"), (3, "BANK GROUP"), (4, "BANK"), (5, "ROW"),
                 (6, "COLUMN"), (7, "CORRECTION MASK"))
CXL_MMER_EVT_TYPES = (("0x00", 0x00, "Health Status Change"), ("0x01", 0x01, "Media Status Change"),
                      ("0x02", 0x02, "Life Used Change"), ("0x03", 0x03, "Temperature Change"),
                      ("0x04", 0x04, "Data Path Error"), ("0x05", 0x05, "LSA Error"))
CXL_DHI_HS_FLAGS = ((0, "MAINTENANCE_NEEDED"), (1, "PERFORMANCE_DEGRADED"), (2, "REPLACEMENT_NEEDED"))
CXL_DHI_MS = (("0x00", 0x00, "Normal"), ("0x01", 0x01, "Not Ready"), ("0x02", 0x02, "Write Persistency Lost"),
              ("0x03", 0x03, "All Data Lost"),
              ("0x04", 0x04, "Write Persistency Loss in the Event of Power Loss"),
              ("0x05", 0x05, "Write Persistency Loss in Event of Shutdown"),
              ("0x06", 0x06, "Write Persistency Loss Imminent"),
              ("0x07", 0x07, "All Data Loss in Event of Power Loss"),
              ("0x08", 0x08, "All Data loss in the Event of Shutdown"),
              ("0x09", 0x09, "All Data Loss Imminent"))
CXL_DHI_AS_TWO_BIT = (("0x0", 0x0, "Normal"), ("0x1", 0x1, "Warning"), ("0x2", 0x2, "Critical"))
CXL_DHI_AS_ONE_BIT = (("0x0", 0x0, "Normal"), ("0x1", 0x1, "Warning"))
CXL_POISON_TRACE_TYPES = (("CXL_POISON_TRACE_LIST", CXL_POISON_TRACE_LIST, "List"),
                          ("CXL_POISON_TRACE_INJECT", CXL_POISON_TRACE_INJECT, "Inject"),
                          ("CXL_POISON_TRACE_CLEAR", CXL_POISON_TRACE_CLEAR, "Clear"))
CXL_POISON_SOURCES = (("0", CXL_POISON_SOURCE_UNKNOWN, "Unknown"), ("1", CXL_POISON_SOURCE_EXTERNAL, "External"),
                      ("2", CXL_POISON_SOURCE_INTERNAL, "Internal"), ("3", CXL_POISON_SOURCE_INJECTED, "Injected"),
                      ("7", CXL_POISON_SOURCE_VENDOR, "Vendor"))
CXL_POISON_FLAGS = ((0, "More"), (1, "Overflow"), (2, "Scanning"))


# ---------------------------------------------------------------- runtime and print-fmt forms of a table
def _flags(bits) -> list:
    return [(BIT(b), name) for b, name in bits]


def _syms(table) -> list:
    return [(v, name) for _, v, name in table]


def _flags_fmt(arg: str, delim: str, bits, close: str = " )") -> str:
    body = ", ".join(f'{{ {_bit_str(b)}, "{name}" }}' for b, name in bits)
    return f'__print_flags({arg}, "{delim}", {body}{close}'


def _syms_fmt(arg: str, table, close: str = " )") -> str:
    body = ", ".join(f'{{ {text}, "{name}" }}' for text, _, name in table)
    return f"__print_symbolic({arg}, {body}{close}"


def cxl_event_log_type_str(v: int) -> str:
    return print_symbolic(v, _syms(CXL_EVENT_LOG_TYPES))


def show_poison_source(v: int) -> str:
    if v > CXL_POISON_SOURCE_INJECTED and v != CXL_POISON_SOURCE_VENDOR:
        return "Reserved"
    return print_symbolic(v, _syms(CXL_POISON_SOURCES))


# ================================================================ the events
_MEMDEV = (ev_string("memdev"), ev_string("host"))
CXL_EVT_TP_ENTRY = (*_MEMDEV, ev_field("int", "log"), ev_field_struct("uuid_t", "hdr_uuid"),
                    ev_field("u64", "serial"), ev_field("u32", "hdr_flags"), ev_field("u16", "hdr_handle"),
                    ev_field("u16", "hdr_related_handle"), ev_field("u64", "hdr_timestamp"),
                    ev_field("u8", "hdr_length"), ev_field("u8", "hdr_maint_op_class"))

_LOG_FMT = _syms_fmt("REC->log", CXL_EVENT_LOG_TYPES, close="")
CXL_EVT_FMT = ("memdev=%s host=%s serial=%lld log=%s : time=%llu uuid=%pUb len=%d flags='%s' handle=%x "
               "related_handle=%x maint_op_class=%u : ")
CXL_EVT_ARGS = ("__get_str(memdev), __get_str(host), REC->serial, " + _LOG_FMT + "), REC->hdr_timestamp, "
                "&REC->hdr_uuid, REC->hdr_length, "
                + _flags_fmt("REC->hdr_flags", " | ", CXL_EVENT_RECORD_FLAGS)
                + ", REC->hdr_handle, REC->hdr_related_handle, REC->hdr_maint_op_class, ")


def _evt_printk(r: dict) -> str:
    """CXL_EVT_TP_printk()'s common part."""
    return (f"memdev={r['memdev']} host={r['host']} serial={s64(r['serial'])} "
            f"log={cxl_event_log_type_str(r['log'])} : time={r['hdr_timestamp']} uuid={print_uuid(r['hdr_uuid'])} "
            f"len={r['hdr_length']} flags='{print_flags(r['hdr_flags'], ' | ', _flags(CXL_EVENT_RECORD_FLAGS))}' "
            f"handle={r['hdr_handle']:x} related_handle={r['hdr_related_handle']:x} "
            f"maint_op_class={r['hdr_maint_op_class']} : ")


def _uc(v: int) -> str:
    return print_flags(v, " | ", _flags(CXL_RAS_UC_BITS))


def _ce(v: int) -> str:
    return print_flags(v, " | ", _flags(CXL_RAS_CE_BITS))


CXL_AER_UNCORRECTABLE_ERROR = trace_add_event_call(TraceEventCall(
    "cxl", "cxl_aer_uncorrectable_error",
    (*_MEMDEV, ev_field("u64", "serial"), ev_field("u32", "status"), ev_field("u32", "first_error"),
     ev_array("u32", "header_log", CXL_HEADERLOG_SIZE_U32)),
    "\"memdev=%s host=%s serial=%lld: status: '%s' first_error: '%s'\", __get_str(memdev), __get_str(host), "
    "REC->serial, " + _flags_fmt("REC->status", " | ", CXL_RAS_UC_BITS) + ", "
    + _flags_fmt("REC->first_error", " | ", CXL_RAS_UC_BITS),
    lambda r: (f"memdev={r['memdev']} host={r['host']} serial={s64(r['serial'])}: status: '{_uc(r['status'])}' "
               f"first_error: '{_uc(r['first_error'])}'")))

CXL_AER_CORRECTABLE_ERROR = trace_add_event_call(TraceEventCall(
    "cxl", "cxl_aer_correctable_error",
    (*_MEMDEV, ev_field("u64", "serial"), ev_field("u32", "status")),
    "\"memdev=%s host=%s serial=%lld: status: '%s'\", __get_str(memdev), __get_str(host), REC->serial, "
    + _flags_fmt("REC->status", " | ", CXL_RAS_CE_BITS),
    lambda r: f"memdev={r['memdev']} host={r['host']} serial={s64(r['serial'])}: status: '{_ce(r['status'])}'"))

CXL_OVERFLOW = trace_add_event_call(TraceEventCall(
    "cxl", "cxl_overflow",
    (*_MEMDEV, ev_field("int", "log"), ev_field("u64", "serial"), ev_field("u64", "first_ts"),
     ev_field("u64", "last_ts"), ev_field("u16", "count")),
    "\"memdev=%s host=%s serial=%lld: log=%s : %u records from %llu to %llu\", __get_str(memdev), "
    "__get_str(host), REC->serial, " + _LOG_FMT + "), REC->count, REC->first_ts, REC->last_ts",
    lambda r: (f"memdev={r['memdev']} host={r['host']} serial={s64(r['serial'])}: "
               f"log={cxl_event_log_type_str(r['log'])} : {r['count']} records from {r['first_ts']} "
               f"to {r['last_ts']}")))

CXL_GENERIC_EVENT = trace_add_event_call(TraceEventCall(
    "cxl", "cxl_generic_event",
    (*CXL_EVT_TP_ENTRY, ev_array("u8", "data", CXL_EVENT_RECORD_DATA_LENGTH)),
    f'"{CXL_EVT_FMT}%s", {CXL_EVT_ARGS}__print_hex(REC->data, 0x50)',
    lambda r: _evt_printk(r) + print_hex(r["data"])))

CXL_GENERAL_MEDIA = trace_add_event_call(TraceEventCall(
    "cxl", "cxl_general_media",
    (*CXL_EVT_TP_ENTRY, ev_field("u64", "dpa"), ev_field("u8", "descriptor"), ev_field("u8", "type"),
     ev_field("u8", "transaction_type"), ev_field("u8", "channel"), ev_field("u32", "device"),
     ev_array("u8", "comp_id", CXL_EVENT_GEN_MED_COMP_ID_SIZE), ev_field("u64", "hpa"),
     ev_field_struct("uuid_t", "region_uuid"), ev_field("u16", "validity_flags"), ev_field("u8", "rank"),
     ev_field("u8", "dpa_flags"), ev_string("region_name")),
    f'"{CXL_EVT_FMT}dpa=%llx dpa_flags=\'%s\' descriptor=\'%s\' type=\'%s\' transaction_type=\'%s\' '
    "channel=%u rank=%u device=%x comp_id=%s validity_flags='%s' hpa=%llx region=%s region_uuid=%pUb\", "
    f"{CXL_EVT_ARGS}REC->dpa, " + _flags_fmt("REC->dpa_flags", "|", CXL_DPA_FLAGS) + ", "
    + _flags_fmt("REC->descriptor", "|", CXL_GMER_EVT_DESC) + ", "
    + _syms_fmt("REC->type", CXL_GMER_MEM_EVT_TYPES) + ", "
    + _syms_fmt("REC->transaction_type", CXL_GMER_TRANS_TYPES) + ", "
    "REC->channel, REC->rank, REC->device, __print_hex(REC->comp_id, 0x10), "
    + _flags_fmt("REC->validity_flags", "|", CXL_GMER_VALID) + ", "
    "REC->hpa, __get_str(region_name), &REC->region_uuid",
    lambda r: _evt_printk(r) + (
        f"dpa={r['dpa']:x} dpa_flags='{print_flags(r['dpa_flags'], '|', _flags(CXL_DPA_FLAGS))}' "
        f"descriptor='{print_flags(r['descriptor'], '|', _flags(CXL_GMER_EVT_DESC))}' "
        f"type='{print_symbolic(r['type'], _syms(CXL_GMER_MEM_EVT_TYPES))}' "
        f"transaction_type='{print_symbolic(r['transaction_type'], _syms(CXL_GMER_TRANS_TYPES))}' "
        f"channel={r['channel']} rank={r['rank']} device={r['device']:x} comp_id={print_hex(r['comp_id'])} "
        f"validity_flags='{print_flags(r['validity_flags'], '|', _flags(CXL_GMER_VALID))}' "
        f"hpa={r['hpa']:x} region={r['region_name']} region_uuid={print_uuid(r['region_uuid'])}")))

CXL_DRAM = trace_add_event_call(TraceEventCall(
    "cxl", "cxl_dram",
    (*CXL_EVT_TP_ENTRY, ev_field("u64", "dpa"), ev_field("u8", "descriptor"), ev_field("u8", "type"),
     ev_field("u8", "transaction_type"), ev_field("u8", "channel"), ev_field("u16", "validity_flags"),
     ev_field("u16", "column"), ev_field("u32", "nibble_mask"), ev_field("u32", "row"),
     ev_array("u8", "cor_mask", CXL_EVENT_DER_CORRECTION_MASK_SIZE), ev_field("u64", "hpa"),
     ev_field_struct("uuid_t", "region_uuid"), ev_field("u8", "rank"), ev_field("u8", "bank_group"),
     ev_field("u8", "bank"), ev_field("u8", "dpa_flags"), ev_string("region_name")),
    f'"{CXL_EVT_FMT}dpa=%llx dpa_flags=\'%s\' descriptor=\'%s\' type=\'%s\' transaction_type=\'%s\' '
    "channel=%u rank=%u nibble_mask=%x bank_group=%u bank=%u row=%u column=%u cor_mask=%s "
    "validity_flags='%s' hpa=%llx region=%s region_uuid=%pUb\", "
    f"{CXL_EVT_ARGS}REC->dpa, " + _flags_fmt("REC->dpa_flags", "|", CXL_DPA_FLAGS) + ", "
    + _flags_fmt("REC->descriptor", "|", CXL_GMER_EVT_DESC) + ", "
    + _syms_fmt("REC->type", CXL_DER_MEM_EVT_TYPES) + ", "
    + _syms_fmt("REC->transaction_type", CXL_GMER_TRANS_TYPES) + ", "
    "REC->channel, REC->rank, REC->nibble_mask, REC->bank_group, REC->bank, REC->row, REC->column, "
    "__print_hex(REC->cor_mask, 0x20), " + _flags_fmt("REC->validity_flags", "|", CXL_DER_VALID) + ", "
    "REC->hpa, __get_str(region_name), &REC->region_uuid",
    lambda r: _evt_printk(r) + (
        f"dpa={r['dpa']:x} dpa_flags='{print_flags(r['dpa_flags'], '|', _flags(CXL_DPA_FLAGS))}' "
        f"descriptor='{print_flags(r['descriptor'], '|', _flags(CXL_GMER_EVT_DESC))}' "
        f"type='{print_symbolic(r['type'], _syms(CXL_DER_MEM_EVT_TYPES))}' "
        f"transaction_type='{print_symbolic(r['transaction_type'], _syms(CXL_GMER_TRANS_TYPES))}' "
        f"channel={r['channel']} rank={r['rank']} nibble_mask={r['nibble_mask']:x} "
        f"bank_group={r['bank_group']} bank={r['bank']} row={r['row']} column={r['column']} "
        f"cor_mask={print_hex(r['cor_mask'])} "
        f"validity_flags='{print_flags(r['validity_flags'], '|', _flags(CXL_DER_VALID))}' "
        f"hpa={r['hpa']:x} region={r['region_name']} region_uuid={print_uuid(r['region_uuid'])}")))


def _as_fmt(expr: str, table) -> str:
    return _syms_fmt(expr, table)


CXL_MEMORY_MODULE = trace_add_event_call(TraceEventCall(
    "cxl", "cxl_memory_module",
    (*CXL_EVT_TP_ENTRY, ev_field("u8", "event_type"), ev_field("u8", "health_status"),
     ev_field("u8", "media_status"), ev_field("u8", "life_used"), ev_field("u32", "dirty_shutdown_cnt"),
     ev_field("u32", "cor_vol_err_cnt"), ev_field("u32", "cor_per_err_cnt"), ev_field("s16", "device_temp"),
     ev_field("u8", "add_status")),
    f'"{CXL_EVT_FMT}event_type=\'%s\' health_status=\'%s\' media_status=\'%s\' as_life_used=%s '
    "as_dev_temp=%s as_cor_vol_err_cnt=%s as_cor_per_err_cnt=%s life_used=%u device_temp=%d "
    "dirty_shutdown_cnt=%u cor_vol_err_cnt=%u cor_per_err_cnt=%u\", "
    f"{CXL_EVT_ARGS}" + _syms_fmt("REC->event_type", CXL_MMER_EVT_TYPES) + ", "
    + _flags_fmt("REC->health_status", "|", CXL_DHI_HS_FLAGS) + ", "
    + _syms_fmt("REC->media_status", CXL_DHI_MS) + ", "
    + _as_fmt("(REC->add_status & 0x3)", CXL_DHI_AS_TWO_BIT) + ", "
    + _as_fmt("((REC->add_status & 0xC) >> 2)", CXL_DHI_AS_TWO_BIT) + ", "
    + _as_fmt("((REC->add_status & 0x10) >> 4)", CXL_DHI_AS_ONE_BIT) + ", "
    + _as_fmt("((REC->add_status & 0x20) >> 5)", CXL_DHI_AS_ONE_BIT) + ", "
    "REC->life_used, REC->device_temp, REC->dirty_shutdown_cnt, REC->cor_vol_err_cnt, REC->cor_per_err_cnt",
    lambda r: _evt_printk(r) + (
        f"event_type='{print_symbolic(r['event_type'], _syms(CXL_MMER_EVT_TYPES))}' "
        f"health_status='{print_flags(r['health_status'], '|', _flags(CXL_DHI_HS_FLAGS))}' "
        f"media_status='{print_symbolic(r['media_status'], _syms(CXL_DHI_MS))}' "
        f"as_life_used={print_symbolic(r['add_status'] & 0x3, _syms(CXL_DHI_AS_TWO_BIT))} "
        f"as_dev_temp={print_symbolic((r['add_status'] & 0xC) >> 2, _syms(CXL_DHI_AS_TWO_BIT))} "
        f"as_cor_vol_err_cnt={print_symbolic((r['add_status'] & 0x10) >> 4, _syms(CXL_DHI_AS_ONE_BIT))} "
        f"as_cor_per_err_cnt={print_symbolic((r['add_status'] & 0x20) >> 5, _syms(CXL_DHI_AS_ONE_BIT))} "
        f"life_used={r['life_used']} device_temp={r['device_temp']} "
        f"dirty_shutdown_cnt={r['dirty_shutdown_cnt']} cor_vol_err_cnt={r['cor_vol_err_cnt']} "
        f"cor_per_err_cnt={r['cor_per_err_cnt']}")))

CXL_POISON = trace_add_event_call(TraceEventCall(
    "cxl", "cxl_poison",
    (*_MEMDEV, ev_field("u64", "serial"), ev_field("u8", "trace_type"), ev_string("region"),
     ev_field("u64", "overflow_ts"), ev_field("u64", "hpa"), ev_field("u64", "dpa"), ev_field("u32", "dpa_length"),
     ev_array("char", "uuid", 16), ev_field("u8", "source"), ev_field("u8", "flags")),
    "\"memdev=%s host=%s serial=%lld trace_type=%s region=%s region_uuid=%pU hpa=0x%llx dpa=0x%llx "
    "dpa_length=0x%x source=%s flags=%s overflow_time=%llu\", __get_str(memdev), __get_str(host), REC->serial, "
    + _syms_fmt("REC->trace_type", CXL_POISON_TRACE_TYPES, close="") + "), __get_str(region), REC->uuid, "
    "REC->hpa, REC->dpa, REC->dpa_length, (((REC->source > 3) && (REC->source != 7)) ? \"Reserved\" : "
    + _syms_fmt("REC->source", CXL_POISON_SOURCES, close="") + ")), "
    + _flags_fmt("REC->flags", "|", CXL_POISON_FLAGS, close="") + "), REC->overflow_ts",
    lambda r: (f"memdev={r['memdev']} host={r['host']} serial={s64(r['serial'])} "
               f"trace_type={print_symbolic(r['trace_type'], _syms(CXL_POISON_TRACE_TYPES))} "
               f"region={r['region']} region_uuid={print_uuid(r['uuid'])} hpa=0x{r['hpa']:x} dpa=0x{r['dpa']:x} "
               f"dpa_length=0x{r['dpa_length']:x} source={show_poison_source(r['source'])} "
               f"flags={print_flags(r['flags'], '|', _flags(CXL_POISON_FLAGS))} overflow_time={r['overflow_ts']}")))

CXL_EVENTS = (CXL_AER_UNCORRECTABLE_ERROR, CXL_AER_CORRECTABLE_ERROR, CXL_OVERFLOW, CXL_GENERIC_EVENT,
              CXL_GENERAL_MEDIA, CXL_DRAM, CXL_MEMORY_MODULE, CXL_POISON)


# ================================================================ TP_fast_assign: the trace_* calls
def _tracing(cxlmd):
    return cxlmd.sys.tracing


def _memdev_fields(cxlmd) -> dict:
    host = cxlmd.parent.name if cxlmd.parent is not None else "(null)"
    return {"memdev": cxlmd.name, "host": host, "serial": cxlmd.info.serial}


def _need(record: bytes, n: int, what: str) -> bytes:
    if len(record) < n:
        raise ValueError(f"{what}: {len(record)} bytes, the record is {n}")
    return bytes(record[:n])


def _evt_fields(cxlmd, log: int, record: bytes) -> dict:
    """CXL_EVT_TP_fast_assign(): the common header fields (the uuid is set by each event)."""
    _, length, flags, handle, related, timestamp, maint, _ = CXL_EVENT_RECORD_HDR.unpack_from(record, 0)
    return {**_memdev_fields(cxlmd), "log": log, "hdr_length": length,
            "hdr_flags": int.from_bytes(flags, "little"), "hdr_handle": handle, "hdr_related_handle": related,
            "hdr_timestamp": timestamp, "hdr_maint_op_class": maint}


def _region_fields(region, hpa: int) -> dict:
    return {"hpa": hpa & ULLONG_MAX, "region_name": region.name if region is not None else "",
            "region_uuid": bytes(region.uuid) if region is not None else bytes(16)}


def _media_fields(record: bytes) -> dict:
    phys, desc, typ, trans, valid, channel, rank = CXL_EVENT_MEDIA_HDR.unpack_from(record, CXL_EVENT_RECORD_HDR.size)
    return {"dpa": phys & CXL_DPA_MASK, "dpa_flags": phys & CXL_DPA_FLAGS_MASK, "descriptor": desc, "type": typ,
            "transaction_type": trans, "validity_flags": int.from_bytes(valid, "little"), "channel": channel,
            "rank": rank}


def trace_cxl_aer_uncorrectable_error(cxlmd, status: int, fe: int, hl: bytes) -> None:
    tr = _tracing(cxlmd)
    if not tr.enabled(CXL_AER_UNCORRECTABLE_ERROR):
        return
    tr.emit(CXL_AER_UNCORRECTABLE_ERROR, {**_memdev_fields(cxlmd), "status": status, "first_error": fe,
                                          "header_log": bytes(hl[:CXL_HEADERLOG_SIZE])})


def trace_cxl_aer_correctable_error(cxlmd, status: int) -> None:
    tr = _tracing(cxlmd)
    if tr.enabled(CXL_AER_CORRECTABLE_ERROR):
        tr.emit(CXL_AER_CORRECTABLE_ERROR, {**_memdev_fields(cxlmd), "status": status})


def trace_cxl_overflow(cxlmd, log: int, payload: bytes) -> None:
    """``payload``: the Get Event Records output (its 32-byte header is read)."""
    tr = _tracing(cxlmd)
    if not tr.enabled(CXL_OVERFLOW):
        return
    _, _, count, first, last, _, _ = CXL_GET_EVENT_PAYLOAD.unpack(_need(payload, CXL_GET_EVENT_PAYLOAD.size,
                                                                        "cxl_overflow"))
    tr.emit(CXL_OVERFLOW, {**_memdev_fields(cxlmd), "log": log, "count": count, "first_ts": first, "last_ts": last})


def trace_cxl_generic_event(cxlmd, log: int, uuid: bytes, record: bytes) -> None:
    tr = _tracing(cxlmd)
    if not tr.enabled(CXL_GENERIC_EVENT):
        return
    rec = _need(record, CXL_EVENT_RECORD_LENGTH, "cxl_generic_event")
    tr.emit(CXL_GENERIC_EVENT, {**_evt_fields(cxlmd, log, rec), "hdr_uuid": bytes(uuid[:16]),
                                "data": rec[CXL_EVENT_RECORD_HDR.size:]})


def trace_cxl_general_media(cxlmd, log: int, region, hpa: int, record: bytes) -> None:
    tr = _tracing(cxlmd)
    if not tr.enabled(CXL_GENERAL_MEDIA):
        return
    rec = _need(record, CXL_EVENT_RECORD_LENGTH, "cxl_general_media")
    device, comp_id, _ = CXL_EVENT_GEN_MEDIA_TAIL.unpack_from(rec, CXL_EVENT_RECORD_HDR.size + CXL_EVENT_MEDIA_HDR.size)
    tr.emit(CXL_GENERAL_MEDIA, {**_evt_fields(cxlmd, log, rec), "hdr_uuid": CXL_EVENT_GEN_MEDIA_UUID,
                                **_media_fields(rec), "device": int.from_bytes(device, "little"),
                                "comp_id": comp_id, **_region_fields(region, hpa)})


def trace_cxl_dram(cxlmd, log: int, region, hpa: int, record: bytes) -> None:
    tr = _tracing(cxlmd)
    if not tr.enabled(CXL_DRAM):
        return
    rec = _need(record, CXL_EVENT_RECORD_LENGTH, "cxl_dram")
    nibble, bank_group, bank, row, column, cor_mask, _ = CXL_EVENT_DRAM_TAIL.unpack_from(
        rec, CXL_EVENT_RECORD_HDR.size + CXL_EVENT_MEDIA_HDR.size)
    tr.emit(CXL_DRAM, {**_evt_fields(cxlmd, log, rec), "hdr_uuid": CXL_EVENT_DRAM_UUID, **_media_fields(rec),
                       "nibble_mask": int.from_bytes(nibble, "little"), "bank_group": bank_group, "bank": bank,
                       "row": int.from_bytes(row, "little"), "column": int.from_bytes(column, "little"),
                       "cor_mask": cor_mask, **_region_fields(region, hpa)})


def trace_cxl_memory_module(cxlmd, log: int, record: bytes) -> None:
    tr = _tracing(cxlmd)
    if not tr.enabled(CXL_MEMORY_MODULE):
        return
    rec = _need(record, CXL_EVENT_RECORD_LENGTH, "cxl_memory_module")
    (etype, health, media, add, life, temp, dirty, cor_vol, cor_per, _) = CXL_EVENT_MEM_MODULE.unpack_from(
        rec, CXL_EVENT_RECORD_HDR.size)
    tr.emit(CXL_MEMORY_MODULE, {**_evt_fields(cxlmd, log, rec), "hdr_uuid": CXL_EVENT_MEM_MODULE_UUID,
                                "event_type": etype, "health_status": health, "media_status": media,
                                "add_status": add, "life_used": life,
                                "device_temp": int.from_bytes(temp, "little", signed=True),
                                "dirty_shutdown_cnt": int.from_bytes(dirty, "little"),
                                "cor_vol_err_cnt": int.from_bytes(cor_vol, "little"),
                                "cor_per_err_cnt": int.from_bytes(cor_per, "little")})


def trace_cxl_poison(cxlmd, region, record: bytes, flags: int, overflow_ts: int, trace_type: int, hpa: int) -> None:
    """``record``: one Get Poison List media error record; ``hpa`` is used when ``region`` maps it."""
    tr = _tracing(cxlmd)
    if not tr.enabled(CXL_POISON):
        return
    address, length, _ = CXL_POISON_RECORD.unpack(_need(record, CXL_POISON_RECORD.size, "cxl_poison"))
    tr.emit(CXL_POISON, {**_memdev_fields(cxlmd), "trace_type": trace_type,
                         "region": region.name if region is not None else "",
                         "overflow_ts": overflow_ts & ULLONG_MAX if flags & CXL_POISON_FLAG_OVERFLOW else 0,
                         "hpa": hpa & ULLONG_MAX if region is not None else ULLONG_MAX,
                         "dpa": address & CXL_POISON_START_MASK, "dpa_length": length * CXL_POISON_LEN_MULT,
                         "uuid": bytes(region.uuid) if region is not None else bytes(16),
                         "source": address & CXL_POISON_SOURCE_MASK, "flags": flags})
