"""kernel/module/sysfs.c + kernel/params.c: ``/sys/module/<name>/``.

A loaded module shows ``initstate`` (``live``) and, when it has any, ``parameters/<name>`` files;
a built-in one (``memory_hotplug``) has ``parameters/`` but no ``initstate``.  A parameter is a
:class:`KernelParam` with its own mode, show and store (``param_set_bool``, ``param_set_uint``...);
parameters given at load time (``modprobe cxl_test interleave_arithmetic=1``) are read-only values.
"""

from __future__ import annotations

from typing import Callable, Optional

import attrs

from cxlsys.kernfs import KDir, KFile


def params_text(params: dict) -> str:
    """Module parameters as modprobe takes them: ``key=value``, space separated."""
    return " ".join(f"{k}={v}" for k, v in params.items())


@attrs.frozen
class KernelParam:
    mode: int
    show: Callable[[], str]
    store: Optional[Callable[[str], None]] = None


@attrs.define(eq=False)
class Module:
    name: str
    params: dict = attrs.field(factory=dict)      # name -> KernelParam
    builtin: bool = False

    @classmethod
    def loaded(cls, name: str, values: Optional[dict] = None) -> "Module":
        """A module loaded with these parameter values (0444 files showing them)."""
        return cls(name, {k: KernelParam(0o444, _value_show(v)) for k, v in (values or {}).items()})

    def kernfs_dir(self) -> KDir:
        return KDir(self._kernfs_children, owner=self)

    def kernfs_paths(self) -> list:
        return [f"module/{self.name}", f"module/{self.name}/parameters"]

    def _kernfs_children(self) -> dict:
        out: dict = {} if self.builtin else {"initstate": KFile(0o444, lambda: "live\n", owner=self)}
        if self.params:
            out["parameters"] = KDir(lambda: {k: KFile(p.mode, p.show, p.store, owner=self)
                                              for k, p in self.params.items()}, owner=self)
        return out


def _value_show(value) -> Callable[[], str]:
    return lambda: f"{value}\n"
