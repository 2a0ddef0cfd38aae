"""drivers/cxl/port.c: the cxl_port driver — enumerate dports and HDM decoders on bind."""

from __future__ import annotations

import attrs

from cxlsys.base.bus import Driver
from cxlsys.base.device import Device
from cxlsys.cxl.core import hdm, region
from cxlsys.cxl.core.port import CxlEndpointDecoder, CxlPort, cxl_port_add_dport
from cxlsys.errors import KernelError


def devm_cxl_port_enumerate_dports(port: CxlPort) -> None:
    for child in port.uport.children.values():
        pid = getattr(child, "dport_id", None)
        if pid is not None:
            cxl_port_add_dport(port, child, pid, host=port)


@attrs.define(eq=False, kw_only=True)
class CxlPortDriver(Driver):
    name: str = "cxl_port"
    module: str = "cxl_port"

    def match(self, dev) -> bool:
        return isinstance(dev, CxlPort) and dev.kind != "root"

    def probe(self, port: Device) -> None:
        assert isinstance(port, CxlPort)        # match() accepts ports only
        if port.kind == "endpoint":
            hdm.devm_cxl_enumerate_decoders(port)
            for dec in list(port.decoders.values()):
                if isinstance(dec, CxlEndpointDecoder) and dec.auto and dec.enabled:
                    try:
                        region.cxl_add_to_region(dec)
                    except KernelError as e:
                        port.sys.klog.log(f"cxl_port {port.name}: {dec.name}: failed to add to region: {e.reason}",
                                          "err")
            return
        port.dead = False
        devm_cxl_port_enumerate_dports(port)
        hdm.devm_cxl_enumerate_decoders(port)
