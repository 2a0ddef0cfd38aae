"""drivers/cxl/core/core.h: what one cxl_core file calls in another one that is built on top of it.

The C files of cxl_core call each other freely and the linker joins them: port.c's root decoder
attribute table lists region.c's ``dev_attr_create_pmem_region``, port.c's decoder removal calls
region.c's ``cxl_decoder_kill_region()``, the endpoint decoder's ``mode``/``dpa_size`` stores are
hdm.c's DPA allocator, while region.c and hdm.c use port.c's structures everywhere.  Python
imports must form a tree (hdm imports port, the region modules import both), so the few names
that point up that tree are declared here as :class:`Extern` slots: the module that defines one
marks the definition with :func:`export`, which fills the slot when that module is imported
(``cxlsys.system`` imports them all).  This module imports nothing of the core.
"""

from __future__ import annotations

from typing import Any, Callable


class Extern:
    """A function declared here and defined (exported) by a module further up the import tree."""

    def __init__(self, name: str, defined_in: str):
        self.name = name
        self.defined_in = defined_in
        self.fn: Callable[..., Any] | None = None

    def __call__(self, *args: Any) -> Any:
        if self.fn is None:
            raise RuntimeError(f"{self.name}() is not linked: import {self.defined_in} first")
        return self.fn(*args)

    def __repr__(self) -> str:
        return f"<extern {self.name} ({self.defined_in})>"


def export(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: ``fn`` is the definition of the :class:`Extern` of the same name below."""
    slot = globals().get(fn.__name__)
    if not isinstance(slot, Extern):
        raise AssertionError(f"{fn.__name__} is not declared in cxlsys.cxl.core.core")
    slot.fn = fn
    return fn


# region.c: the root decoder's region attributes (port.c's cxl_decoder_root_attrs), decoder removal
create_pmem_region_store = Extern("create_pmem_region_store", "cxlsys.cxl.core.region")
create_ram_region_store = Extern("create_ram_region_store", "cxlsys.cxl.core.region")
create_ram_bi_region_store = Extern("create_ram_bi_region_store", "cxlsys.cxl.core.region")   # the BI proposal
delete_region_store = Extern("delete_region_store", "cxlsys.cxl.core.region")
cxl_decoder_kill_region = Extern("cxl_decoder_kill_region", "cxlsys.cxl.core.region_attach")

# hdm.c: the endpoint decoder's mode and dpa_size stores (cxl_dpa_set_mode(), cxl_dpa_free/alloc())
cxl_dpa_set_mode = Extern("cxl_dpa_set_mode", "cxlsys.cxl.core.hdm")
dpa_size_store = Extern("dpa_size_store", "cxlsys.cxl.core.hdm")
