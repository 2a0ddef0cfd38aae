"""drivers/cxl/mem.c: the cxl_mem driver — a memdev finds its ports and gets an endpoint.

While bound it adds ``trigger_poison_list`` to the memdev (a driver attribute, for devices whose
CEL has Get Poison List) and the debugfs directory ``cxl/memN/`` (``dpamem``, and
``inject_poison`` / ``clear_poison`` when the device has those commands; see cxlsys.debugfs)."""

from __future__ import annotations

import errno

import attrs

from cxlsys.base.bus import Driver
from cxlsys.base.device import Attr, AttrGroup, Device, SysfsDir
from cxlsys.cxl import cxlmem as M
from cxlsys.cxl.core.bi import bi_setup
from cxlsys.cxl.core.memdev import CxlMemdev, cxl_trigger_poison_list
from cxlsys.cxl.core.pmem import devm_cxl_add_nvdimm
from cxlsys.cxl.core.port import cxl_detach_ep, devm_cxl_add_port, find_cxl_port_by_uport, find_dport, unregister_port
from cxlsys.errors import KernelError
from cxlsys.kstrto import kstrtobool_true


def _ensure_dport(md: CxlMemdev, dport_dev):
    """devm_cxl_enumerate_ports(): make sure every port above ``dport_dev`` exists and is enabled."""
    sys = md.sys
    dp = find_dport(sys, dport_dev)
    if dp is not None:
        return dp
    uport_dev = dport_dev.parent
    if uport_dev is None:
        raise KernelError(errno.ENXIO, f"{md.name}: CXL port topology not found above {dport_dev.name}")
    port = find_cxl_port_by_uport(sys, uport_dev)
    if port is None:
        above = find_dport(sys, uport_dev)
        if above is not None and above.port.kind == "root":
            raise KernelError(errno.ENXIO, f"{md.name}: host bridge {uport_dev.name} has no CXL port")
        if uport_dev.parent is None:
            raise KernelError(errno.ENXIO, f"{md.name}: CXL port topology not found above {uport_dev.name}")
        parent_dp = _ensure_dport(md, uport_dev.parent)
        parent_port = parent_dp.port
        if parent_port.driver is None and parent_port.kind != "root":
            raise KernelError(errno.ENXIO, f"{md.name}: CXL port topology {parent_port.name} not enabled")
        port = devm_cxl_add_port(parent_port, uport_dev, parent_dp, kind="port", hdm=sys.hdm_of(uport_dev))
    if port.driver is None:
        raise KernelError(errno.ENXIO, f"{md.name}: CXL port topology {port.name} not enabled")
    dp = port.find_dport_by_dev(dport_dev)
    if dp is None:
        raise KernelError(errno.ENXIO, f"{md.name}: {dport_dev.name} is not a dport of {port.name}")
    return dp


def delete_endpoint(md: CxlMemdev, endpoint_parent) -> None:
    ep = md.endpoint
    if ep is not None:
        endpoint_parent.devm_remove_action(f"unregister:{ep.name}")
        md.endpoint = None
        unregister_port(ep)
    cxl_detach_ep(md)


def trigger_poison_list_store(md: CxlMemdev, buf: str) -> None:
    if not kstrtobool_true(buf):
        raise KernelError(errno.EINVAL, f"{md.name}: trigger_poison_list: expected a true value")
    cxl_trigger_poison_list(md)


# cxl_mem_groups: the driver's dev_groups; cxl_mem_visible() shows the file to devices whose CEL
# has Get Poison List (see CxlMemDriver.dev_groups)
cxl_mem_group = AttrGroup([Attr("trigger_poison_list", 0o200, None, trigger_poison_list_store)])


CXL_DEBUGFS = SysfsDir("kernel/debug/cxl")      # /sys/kernel/debug/cxl (cxlsys/debugfs.py lists it)


@attrs.define(eq=False, kw_only=True)
class CxlMemDriver(Driver):
    name: str = "cxl_mem"
    module: str = "cxl_mem"

    def match(self, dev) -> bool:
        return isinstance(dev, CxlMemdev)

    def dev_groups(self, dev: Device) -> tuple:
        if isinstance(dev, CxlMemdev) and M.CXL_POISON_ENABLED_LIST in dev.mds.poison.enabled_cmds:
            return (cxl_mem_group,)
        return ()

    def probe(self, md: Device) -> None:
        assert isinstance(md, CxlMemdev)        # match() accepts memdevs only
        assert md.parent is not None            # a memdev sits below its host device (devm_cxl_add_memdev)
        # cxl_debugfs_create_dir(memN): its listing follows the binding; report both transitions
        md.sys.changes.touch(CXL_DEBUGFS)
        md.devm_add_action(lambda: md.sys.changes.touch(CXL_DEBUGFS), "remove_debugfs")
        dport_dev = md.parent.parent
        if dport_dev is None:
            raise KernelError(errno.ENXIO, f"{md.name}: CXL port topology not found")
        dp = _ensure_dport(md, dport_dev)
        parent_port = dp.port
        # record the endpoint on every switch/host-bridge port of its path (cxl_add_ep)
        p = parent_port
        while p is not None and p.kind != "root":
            p.endpoints[md.name] = md
            p = p.parent_port
        endpoint_parent = parent_port.uport if dp.rch else parent_port
        if endpoint_parent.driver is None:
            cxl_detach_ep(md)
            raise KernelError(errno.ENXIO, f"{md.name}: CXL port topology {parent_port.name} not enabled")
        ep = devm_cxl_add_port(endpoint_parent, md, dp, kind="endpoint", hdm=md.hdm)
        md.endpoint = ep
        md.devm_add_action(lambda: delete_endpoint(md, endpoint_parent), "delete_endpoint")
        if ep.driver is None:
            raise KernelError(errno.ENXIO, f"{md.name}: {ep.name} failed probe")
        if md.pmem_size:
            devm_cxl_add_nvdimm(md, ep)
        bi_setup(md)
