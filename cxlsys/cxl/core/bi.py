"""HDM-DB Back-Invalidate (the 2025-2026 "cxl: Support Back-Invalidate" proposal), as a model.

Components that take part, after the QEMU series' register layout (CXL 3.x):
* a **BI Decoder** on every root port and switch downstream port, and on an HDM-DB endpoint;
* a **BI Route Table** on a switch upstream port running in 256B flit mode.
Downstream-port decoders and route tables need an explicit commit, polled with a timeout;
root-port and endpoint decoders do not.  Enabling BI walks endpoint -> root and rolls back
every component it enabled if one fails.  A BI-ID is allocated when the memdev is set up and
freed when its endpoint is deleted; dports count the endpoints using BI through them (nr_bi).

Nothing here is merged kernel ABI: the user-visible names and errnos are the profile's
(:class:`cxlsys.profile.BiUapi`).
"""

from __future__ import annotations

from typing import Optional

import attrs

from cxlsys.errors import KernelError

FLIT_256 = 256


@attrs.define(eq=False)
class BiComponent:
    name: str                       # host device (root port, switch port, memdev function)
    kind: str                       # "decoder" | "rt"
    explicit_commit: bool
    enabled: bool = False
    committed: bool = False
    error: bool = False             # status: error-not-committed
    fault: Optional[str] = None     # injected: "timeout" | "error"
    nr_bi: int = 0                  # endpoints using BI through this component

    @property
    def state(self) -> str:
        if not self.enabled:
            return "disabled"
        return "committed" if (self.committed or not self.explicit_commit) else "enabled"

    def enable(self, prof) -> None:
        self.enabled = True
        if not self.explicit_commit:
            return
        # write commit, poll committed (QEMU: ~100 ms; timeout scale/base say 2 s)
        self.committed = False
        if self.fault == "timeout":
            raise KernelError(prof.err_timeout, f"{self.name}: BI {self.kind} commit timed out")
        if self.fault == "error":
            self.error = True
            raise KernelError(prof.err_commit, f"{self.name}: BI {self.kind} commit error (not committed)")
        self.committed = True
        self.error = False

    def disable(self) -> None:
        self.enabled = self.committed = False


def _flit(dev) -> int:
    return getattr(getattr(dev, "cfg", None), "flit", 68)


def bi_path(md):
    """(component, is_dport) from the endpoint up to the root port, for memdev ``md``."""
    sys = md.sys
    comps = sys.machine.bi_components if sys.machine else {}
    out = []
    ep = md.endpoint
    if ep is None:
        return out
    if md.parent.name in comps:
        out.append((comps[md.parent.name], False))
    port = ep
    while port is not None and port.kind != "root":
        dp = port.parent_dport
        if dp is None or dp.port.kind == "root":
            break
        if dp.dport_dev.name in comps:
            out.append((comps[dp.dport_dev.name], True))
        parent = dp.port
        if parent.kind == "port" and parent.parent_port is not None and parent.parent_port.kind != "root":
            rt = comps.get(parent.uport.name)      # switch upstream port: the route table
            if rt is not None:
                out.append((rt, False))
        port = parent
    return out


def check_path(md) -> Optional[str]:
    """Why BI cannot work for ``md`` (None if it can): HDM-DB device, 256B flit on every hop."""
    if not md.info.hdm_db:
        return f"{md.name}: device is not HDM-DB capable (no back-invalidate)"
    if md.endpoint is None:
        return f"{md.name}: no endpoint"
    if md.info.flit != FLIT_256:
        return f"{md.name}: link is in {md.info.flit}B flit mode, HDM-DB needs 256B"
    comps = md.sys.machine.bi_components
    port = md.endpoint
    while port is not None and port.kind != "root":
        dp = port.parent_dport
        if dp is not None and dp.port.kind != "root":
            if dp.dport_dev.name not in comps:
                return f"{md.name}: {dp.dport_dev.name} has no BI decoder"
            parent = dp.port
            if parent.parent_port is not None and parent.parent_port.kind != "root":
                if _flit(parent.uport) != FLIT_256:
                    return (f"{md.name}: switch {parent.uport.name} upstream link is {_flit(parent.uport)}B flit, "
                            "needs 256B")
                if parent.uport.name not in comps:
                    return f"{md.name}: switch {parent.uport.name} has no BI route table"
        port = port.parent_port
    return None


def bi_setup(md) -> None:
    """At memdev probe: allocate the device's BI-ID (HDM-DB devices only)."""
    if md.sys.profile.bi is None or not md.info.hdm_db:
        return
    md.bi_id = md.sys.bi_id_ida.alloc()


def bi_enable(md) -> None:
    """Enable BI on every component of the path, endpoint first; roll back on failure."""
    prof = md.sys.profile.bi
    if md.bi_enabled:
        return
    why = check_path(md)
    if why:
        raise KernelError(prof.err_not_capable, why)
    path = [c for c, _ in bi_path(md)]
    counted, enabled_here = [], []
    try:
        for comp in path:
            if comp.nr_bi == 0:
                enabled_here.append(comp)      # a component that fails mid-enable is undone too
                comp.enable(prof)
            comp.nr_bi += 1
            counted.append(comp)
    except KernelError as e:
        for comp in counted:
            comp.nr_bi -= 1
        for comp in enabled_here:
            comp.disable()
        md.sys.klog.log(f"cxl_mem {md.name}: BI enable failed, rolled back {len(enabled_here)} component(s): "
                        f"{e.reason}", "err")
        raise
    md.bi_enabled = True
    md.bi_path_cache = path


def bi_release(md) -> None:
    """At endpoint deletion: drop this endpoint's BI use (nr_bi) and free its BI-ID."""
    if md.bi_enabled:
        for comp in md.bi_path_cache:
            comp.nr_bi = max(0, comp.nr_bi - 1)
            if comp.nr_bi == 0:
                comp.disable()
        md.bi_enabled = False
        md.bi_path_cache = []
    if md.bi_id is not None:
        md.sys.bi_id_ida.free(md.bi_id)
        md.bi_id = None
