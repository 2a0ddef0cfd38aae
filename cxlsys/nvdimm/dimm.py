"""drivers/nvdimm/dimm.c: the ``nvdimm`` driver — binds ``nmemN``: tries to unlock a locked dimm
with its key, reads the label area's geometry and contents into its driver data (what
``available_slots`` counts), and drops them on unbind (``ndctl disable-dimm``/``enable-dimm`` are
an unbind and a bind of this driver).
"""

from __future__ import annotations

import errno

import attrs

from cxlsys.base.device import Device
from cxlsys.errors import KernelError
from cxlsys.nvdimm.bus import NdDeviceDriver, NvdimmBusType
from cxlsys.nvdimm.dimm_devs import (
    Nvdimm,
    nvdimm_check_config_data,
    nvdimm_clear_locked,
    nvdimm_init_nsarea,
    nvdimm_security_setup_events,
    nvdimm_set_locked,
)
from cxlsys.nvdimm.label import nd_label_data_init
from cxlsys.nvdimm.nd import NvdimmDrvdata
from cxlsys.nvdimm.security import nvdimm_security_unlock
from cxlsys.uapi.ndctl import ND_DRIVER_DIMM


@attrs.define(eq=False, kw_only=True)
class NvdimmDriver(NdDeviceDriver):
    name: str = "nvdimm"
    type: int = ND_DRIVER_DIMM

    def nd_probe(self, dev: Device) -> None:
        assert isinstance(dev, Nvdimm)
        klog = dev.sys.klog
        rc = nvdimm_security_setup_events(dev)
        if rc < 0:
            klog.dev_err(dev, f"security event setup failed: {rc}")
            raise KernelError(-rc, f"{dev.name}: security event setup failed")
        rc = nvdimm_check_config_data(dev)
        if rc:
            if rc == -errno.ENOTTY:
                return                  # not required for non-aliased nvdimm, ex. NVDIMM-N
            raise KernelError(-rc, f"{dev.name}: no label area commands")
        # the locked bit reflects status codes of the label reads: revalidate it on every probe
        nvdimm_clear_locked(dev)
        ndd = NvdimmDrvdata(dev=dev)
        dev.drvdata = ndd
        # attempt to unlock, if the dimm supports security commands
        rc = nvdimm_security_unlock(dev)
        if rc < 0:
            klog.dev_dbg(dev, f"failed to unlock dimm: {rc}")
        try:
            try:
                nvdimm_init_nsarea(ndd)
            except KernelError as e:
                # EACCES reading the label area properties: capacity locked, labels readable
                if e.errno != errno.EACCES:
                    raise
                nvdimm_set_locked(dev)
            try:
                nd_label_data_init(ndd)
            except KernelError as e:
                # EACCES reading the labels: the label area is locked too; fail the probe
                if e.errno == errno.EACCES:
                    nvdimm_set_locked(dev)
                raise
        except KernelError:
            dev.drvdata = None
            raise
        klog.dev_dbg(dev, f"config data size: {ndd.config_size}")
        # ndd.ns_current >= 0: nd_label_reserve_dpa() (namespace labels are not modelled)

    def remove(self, dev: Device) -> None:
        assert isinstance(dev, Nvdimm)
        dev.drvdata = None


def nvdimm_init(bt: NvdimmBusType) -> None:
    bt.register_driver(NvdimmDriver())
