"""Topology files: the presets load and enumerate as the kernel would; bad files are
refused with one line naming the file, the field and the problem (never a traceback)."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest

from cxlsys.cxl.core.memdev import CxlMemdev
from cxlsys.cxl.core.port import CxlEndpointDecoder, CxlRootDecoder
from cxlsys.cxl.core.region import CxlRegion
from cxlsys.cxl.core.region_state import COMMIT
from cxlsys.sysfs import Sysfs
from cxlsys.system import System
from cxlsys.testing import devices, ports
from cxlsys.topology import FIXTURES, TopologyError, load_topology, parse_topology

ROOT = Path(__file__).resolve().parent.parent
SZ_256M = 256 << 20
SZ_1G = 1 << 30


def host_bridge_ports(system):
    return [p for p in ports(system, "port") if p.parent_port is not None and p.parent_port.kind == "root"]


# ------------------------------------------------------------------ presets

def test_every_preset_loads():
    names = sorted(p.stem for p in FIXTURES.glob("*.toml"))
    assert {"cxl_test", "qemu-hdm-db", "bi-direct"} <= set(names)
    for n in names:
        t = load_topology(n)
        assert t.name and t.description


def test_cxl_test_enumerates():
    s = System.boot("cxl_test")
    root = ports(s, "root")
    assert len(root) == 1 and len(root[0].dports) == 4          # 4 host bridges (one RCH)
    assert len(host_bridge_ports(s)) == 3                        # the RCH has no port
    assert len(ports(s, "port")) == 3 + 5                        # + 5 switches
    mds = devices(s, CxlMemdev)
    assert len(mds) == 11 and all(m.driver is not None for m in mds)
    assert sorted(m.info.serial for m in mds) == list(range(11))
    assert len(ports(s, "endpoint")) == 11
    assert len(devices(s, CxlRootDecoder)) == 6
    rcd = next(m for m in mds if m.parent.name == "cxl_rcd.10")
    assert (rcd.ram_size, rcd.pmem_size) == (2 * SZ_1G, 0)
    assert all((m.ram_size, m.pmem_size) == (SZ_1G, SZ_1G) for m in mds if m is not rcd)


def test_cxl_test_xor_param():
    s = System.boot("cxl_test", {"interleave_arithmetic": 1})
    rds = devices(s, CxlRootDecoder)
    assert len(rds) == 3 and all(r.interleave_arithmetic == 1 for r in rds)


def test_qemu_hdm_db_enumerates():
    s = System.boot("qemu-hdm-db")
    t = s.topology
    assert t.module is None and t.acpi_device == "ACPI0017:00"
    root = ports(s, "root")[0]
    assert root.uport.name == "ACPI0017:00" and root.path == "devices/platform/ACPI0017:00/root0"
    assert list(root.dports) == [12]                               # pxb-cxl bus_nr 12 = _UID 12
    hb = host_bridge_ports(s)
    assert [p.uport.name for p in hb] == ["pci0000:0c"]
    assert s.device_by_path("/devices/pci0000:0c") is not None
    assert sorted(hb[0].dports) == [0, 1]
    assert {d.dport_dev.name for d in hb[0].dports.values()} == {"0000:0c:00.0", "0000:0c:01.0"}
    sw = [p for p in ports(s, "port") if p not in hb]
    assert len(sw) == 1 and sw[0].uport.name == "0000:0d:00.0" and sw[0].parent_port is hb[0]
    assert sorted(sw[0].dports) == [0, 1, 2, 3]
    assert [sw[0].dports[i].dport_dev.name for i in range(4)] == [f"0000:0e:0{i}.0" for i in range(4)]
    mds = sorted(devices(s, CxlMemdev), key=lambda m: m.info.serial)
    assert len(mds) == 4
    assert [m.parent.name for m in mds] == ["0000:0f:00.0", "0000:10:00.0", "0000:11:00.0", "0000:12:00.0"]
    assert [m.info.serial for m in mds] == [1, 2, 3, 4]
    assert all((m.ram_size, m.pmem_size) == (SZ_256M, 0) for m in mds)
    assert [m.info.hdm_db for m in mds] == [True, True, False, False]
    assert [m.info.flit for m in mds] == [256, 256, 68, 68]
    assert all(m.info.payload_max == 2048 for m in mds)
    # bound by cxl_pci, enabled by cxl_mem, endpoints below the switch port
    assert all(m.parent.driver is not None and m.parent.driver.name == "cxl_pci" for m in mds)
    assert all(m.driver is not None and m.driver.name == "cxl_mem" for m in mds)
    eps = ports(s, "endpoint")
    assert len(eps) == 4 and all(e.parent is sw[0] and e.driver is not None for e in eps)
    assert all(len([d for d in e.decoders.values() if isinstance(d, CxlEndpointDecoder)]) == 4 for e in eps)
    rds = devices(s, CxlRootDecoder)
    assert len(rds) == 1
    rd = rds[0]
    assert (rd.name, rd.hpa_start, rd.hpa_size, rd.interleave_ways) == ("decoder0.0", 0x490000000, 4 * SZ_1G, 1)
    assert rd.bi_capable and [x.port_id for x in rd.targets] == [12]
    assert s.machine.windows[0].node == 1
    assert sorted(s.nodes) == [0, 1] and not s.nodes[1].registered    # CXL node offline until kmem


def test_qemu_hdm_db_sysfs():
    fs = Sysfs(System.boot("qemu-hdm-db"))
    assert fs.read("bus/cxl/devices/decoder0.0/cap_ram") == b"1\n"
    assert fs.read("bus/cxl/devices/decoder0.0/cap_pmem") == b"0\n"
    assert fs.read("bus/cxl/devices/mem0/ram/size") == b"0x10000000\n"
    assert fs.read("bus/cxl/devices/mem0/payload_max") == b"2048\n"
    assert fs.read("bus/cxl/devices/mem0/firmware_version") == b"BWFW VERSION 00\n"


def test_bi_direct_enumerates():
    s = System.boot("bi-direct")
    names = [d.name for d in s.cxl_bus.devices]
    assert {"root0", "port1", "endpoint2", "mem0", "decoder0.0", "decoder2.0"} <= set(names)
    by = {d.name: d for d in s.cxl_bus.devices}
    assert isinstance(by["decoder0.0"], CxlRootDecoder) and by["decoder0.0"].bi_capable
    assert by["decoder0.0"].hpa_size == 4 * SZ_1G
    assert by["port1"].uport.name == "pci0000:0c" and len(by["port1"].dports) == 1
    assert isinstance(by["decoder2.0"], CxlEndpointDecoder) and by["decoder2.0"].port is by["endpoint2"]
    md = by["mem0"]
    assert md.endpoint is by["endpoint2"] and md.driver is not None
    assert (md.ram_size, md.pmem_size, md.info.serial) == (SZ_1G, 0, 1)
    assert md.info.hdm_db and md.info.flit == 256
    assert len(host_bridge_ports(s)) == 1 and len(ports(s, "endpoint")) == 1 and len(devices(s, CxlRootDecoder)) == 1


# ------------------------------------------------------------------ bad topologies

def base() -> dict:
    """A valid PCI topology; each bad case below changes one thing."""
    return {
        "name": "t",
        "node": [{"id": 0, "cpus": [0, 1], "memory": "4G"}, {"id": 1, "online": False}],
        "host_bridge": [{"name": "pci0000:0c", "uid": 12, "kind": "pci", "decoders": 4, "targets": 8},
                        {"name": "pci0000:34", "uid": 52, "kind": "pci"}],
        "root_port": [{"name": "0000:0c:00.0", "parent": "pci0000:0c", "port_id": 0},
                      {"name": "0000:0c:01.0", "parent": "pci0000:0c", "port_id": 1},
                      {"name": "0000:34:00.0", "parent": "pci0000:34", "port_id": 0}],
        "switch": [{"name": "0000:0d:00.0", "parent": "0000:0c:00.0", "flit": 256,
                    "downstream": [{"name": "0000:0e:00.0", "port_id": 0}, {"name": "0000:0e:01.0", "port_id": 1}]}],
        "memdev": [{"name": "0000:0f:00.0", "parent": "0000:0e:00.0", "ram": "256M", "serial": 1,
                    "hdm_db": True, "flit": 256},
                   {"name": "0000:10:00.0", "parent": "0000:0e:01.0", "ram": "256M", "serial": 2},
                   {"name": "0000:35:00.0", "parent": "0000:34:00.0", "ram": "1G", "serial": 3}],
        "window": [{"size": "4G", "targets": [12], "granularity": 4096, "restrictions": ["type3", "volatile", "bi"],
                    "node": 1},
                   {"size": "8G", "targets": [12, 52], "granularity": 256, "restrictions": ["type3", "volatile"]}],
        "auto_region": [{"window": 0, "size": "512M", "members": ["0000:0f:00.0", "0000:10:00.0"]}],
    }


def test_base_is_valid():
    t = parse_topology(base(), "base.toml")
    assert [m.kind for m in t.memdevs] == ["pci"] * 3          # inherited from the host bridges
    assert [p.kind for p in t.switches[0].downstream] == ["pci", "pci"]
    assert t.host_bridges[0].parent == ""
    s = System.boot(t)
    assert len(ports(s, "endpoint")) == 3 and len(devices(s, CxlRootDecoder)) == 2


def _rch(t):
    t["host_bridge"].append({"name": "cxl_host_bridge.3", "uid": 3, "rch": True})
    return t


def _platform_memdev(t):
    t["host_bridge"].append({"name": "cxl_host_bridge.0", "uid": 0})
    t["root_port"].append({"name": "cxl_root_port.0", "parent": "cxl_host_bridge.0", "port_id": 0})
    t["memdev"].append({"name": "cxl_mem.0", "parent": "cxl_root_port.0", "ram": "1G"})
    return t


def _second_auto_region_through_a_one_decoder_host_bridge(t):
    """Each auto region through a host bridge commits its next decoder: a second one needs two."""
    t["host_bridge"][0]["decoders"] = 1
    t["memdev"][0]["ram"] = "512M"
    t["auto_region"].append({"window": 0, "size": "256M", "offset": "512M", "members": ["0000:0f:00.0"],
                             "decoder": 1})
    return t


def test_auto_regions_through_one_port_take_its_decoders_in_order():
    t = _second_auto_region_through_a_one_decoder_host_bridge(base())
    t["host_bridge"][0]["decoders"] = 2
    s = System.boot(parse_topology(t, "two.toml"))
    by = {d.name: d for d in s.cxl_bus.devices}
    hb = next(p for p in ports(s, "port") if p.uport.name == "pci0000:0c")
    assert [d.enabled for _, d in sorted(hb.decoders.items())] == [True, True]
    regions = sorted((r for r in by.values() if isinstance(r, CxlRegion)), key=lambda r: r.hpa_start)
    assert [r.nr_targets for r in regions] == [2, 1] and all(r.state == COMMIT for r in regions)
    assert [r.hpa_start - regions[0].hpa_start for r in regions] == [0, 512 << 20]


def _set(path, value):
    """Mutation setting base()[path...] = value (a key of None deletes)."""
    def f(t):
        d = t
        for k in path[:-1]:
            d = d[k]
        if value is _DEL:
            del d[path[-1]]
        else:
            d[path[-1]] = value
        return t
    return f


_DEL = object()


BAD = [
    # id, mutation, field in the message, words of the problem
    ("root-port-under-switch",
     lambda t: t["root_port"].append({"name": "0000:0e:02.0", "parent": "0000:0d:00.0", "port_id": 2}) or t,
     "root_port[3].parent", "not a host bridge"),
    ("root-port-under-rch",
     lambda t: _rch(t)["root_port"].append({"name": "cxl_root_port.9", "parent": "cxl_host_bridge.3",
                                            "port_id": 9, "kind": "platform"}) or t,
     "root_port[3].parent", "RCH host bridge"),
    ("memdev-under-host-bridge", _set(["memdev", 2, "parent"], "pci0000:34"),
     "memdev[2].parent", "is a host bridge"),
    ("memdev-under-switch-upstream", _set(["memdev", 1, "parent"], "0000:0d:00.0"),
     "memdev[1].parent", "switch upstream port"),
    ("memdev-under-memdev", _set(["memdev", 1, "parent"], "0000:0f:00.0"),
     "memdev[1].parent", "is a memdev"),
    ("rcd-under-root-port", _set(["memdev", 2, "rcd"], True),
     "memdev[2].parent", "RCD"),
    ("unknown-parent", _set(["memdev", 2, "parent"], "0000:77:00.0"),
     "memdev[2].parent", "no device named"),
    ("duplicate-root-port-id", _set(["root_port", 1, "port_id"], 0),
     "root_port[1].port_id", "already used"),
    ("duplicate-downstream-port-id", _set(["switch", 0, "downstream", 1, "port_id"], 0),
     "switch[0].downstream[1].port_id", "already used"),
    ("duplicate-name", _set(["memdev", 1, "name"], "0000:0f:00.0"),
     "memdev[1].name", "already used"),
    ("window-rch-interleaved", lambda t: _rch(t)["window"].append({"size": "2G", "targets": [12, 3]}) or t,
     "window[2].targets", "RCH"),
    ("window-unknown-uid", _set(["window", 0, "targets"], [7]),
     "window[0].targets", "no host bridge has uid 7"),
    ("window-size-not-256M", _set(["window", 0, "size"], "1000M"),
     "window[0].size", "multiple of 256M"),
    ("window-ways-mismatch", _set(["window", 1, "ways"], 4),
     "window[1].ways", "4 ways but 2 targets"),
    ("window-granularity", _set(["window", 0, "granularity"], 3000),
     "window[0].granularity", "power of two"),
    ("window-unknown-restriction", _set(["window", 0, "restrictions"], ["type3", "cache"]),
     "window[0].restrictions[1]", '"cache" is not one of'),
    ("window-restriction-not-string", _set(["window", 0, "restrictions"], [["type3"]]),
     "window[0].restrictions[0]", "is not one of"),
    ("window-undeclared-node", _set(["window", 0, "node"], 5),
     "window[0].node", "no [[node]] has id 5"),
    ("window-base-unaligned", _set(["window", 0, "base"], "0x490001000"),
     "window[0].base", "256M aligned"),
    ("window-size-past-64-bit", _set(["window", 0, "size"], hex(1 << 70)),
     "window[0].size", "64-bit window size"),
    ("window-end-past-64-bit", _set(["window", 0, "base"], hex((1 << 64) - (1 << 28))),
     "window[0].base", "passes the end of the 64-bit address space"),
    ("xor-without-cxims", _set(["window", 1, "arithmetic"], "xor"),
     "window[1].arithmetic", "CXIMS"),
    ("memdev-ram-not-256M", _set(["memdev", 0, "ram"], "100M"),
     "memdev[0].ram", "multiple of 256M"),
    ("memdev-no-capacity", _set(["memdev", 2, "ram"], _DEL),
     "memdev[2]", "no capacity"),
    ("memdev-hdm-db-68b", _set(["memdev", 0, "flit"], 68),
     "memdev[0].hdm_db", "flit = 256"),
    ("memdev-flit-value", _set(["memdev", 1, "flit"], 128),
     "memdev[1].flit", "128 is not one of 68, 256"),
    ("memdev-payload", _set(["memdev", 0, "payload_max"], 1000),
     "memdev[0].payload_max", "power of two"),
    ("memdev-decoders", _set(["memdev", 0, "decoders"], 3),
     "memdev[0].decoders", "cannot be encoded"),
    ("memdev-fw-too-long", _set(["memdev", 0, "firmware_version"], "x" * 17),
     "memdev[0].firmware_version", "16 bytes"),
    ("unknown-key", _set(["memdev", 0, "colour"], "blue"),
     "memdev[0].colour", "unknown field"),
    ("unknown-top-level-key", _set(["windows"], []),
     "topology.windows", "unknown field"),
    ("wrong-type-int", _set(["host_bridge", 0, "uid"], "twelve"),
     "host_bridge[0].uid", "not an integer"),
    ("wrong-type-bool-as-int", _set(["root_port", 0, "port_id"], True),
     "root_port[0].port_id", "not an integer"),
    ("wrong-type-size", _set(["memdev", 0, "ram"], True),
     "memdev[0].ram", "not a size"),
    ("wrong-type-bool", _set(["memdev", 0, "hdm_db"], "yes"),
     "memdev[0].hdm_db", "not true/false"),
    ("wrong-type-table", _set(["memdev", 0], "0000:0f:00.0"),
     "memdev[0]", "expected a table"),
    ("negative-size", _set(["memdev", 0, "lsa"], -4096),
     "memdev[0].lsa", "negative"),
    ("missing-parent", _set(["memdev", 0, "parent"], _DEL),
     "memdev[0].parent", "missing required field"),
    ("missing-name", _set(["name"], _DEL),
     "topology.name", "missing required field"),
    ("missing-uid", _set(["host_bridge", 0, "uid"], _DEL),
     "host_bridge[0].uid", "missing required field"),
    ("duplicate-uid", _set(["host_bridge", 1, "uid"], 12),
     "host_bridge[1].uid", "already used"),
    ("pci-host-bridge-name", _set(["host_bridge", 1, "name"], "pci0000_34"),
     "host_bridge[1].name", "pciDDDD:BB"),
    ("pci-function-name", _set(["memdev", 2, "name"], "0000:35:00"),
     "memdev[2].name", "not a PCI function name"),
    ("pci-root-bus", lambda t: _set(["memdev", 2, "parent"], "0000:36:00.0")(
        _set(["root_port", 2, "name"], "0000:36:00.0")(t)),
     "root_port[2].name", "bus must be 34"),
    ("pci-secondary-bus", _set(["memdev", 2, "name"], "0000:33:00.0"),
     "memdev[2].name", "must be greater"),
    ("pci-device-number", _set(["memdev", 2, "name"], "0000:35:01.0"),
     "memdev[2].name", "device number is 00"),
    ("pci-bus-reused", _set(["memdev", 1, "name"], "0000:0f:00.1"),
     "memdev[1].name", "already the bus below"),
    ("kind-mismatch", _set(["memdev", 2, "kind"], "platform"),
     "memdev[2].kind", "below pci device"),
    ("platform-memdev-without-cxl-test", _platform_memdev,
     "memdev[3].kind", "cxl_mock_mem"),
    ("passthrough-two-root-ports", _set(["host_bridge", 0, "decoders"], 0),
     "host_bridge[0].decoders", "exactly one root port"),
    ("switch-loop",
     lambda t: t["switch"].append({"name": "0000:20:00.0", "parent": "0000:21:00.0",
                                   "downstream": [{"name": "0000:21:00.0", "port_id": 0}]}) or t,
     "switch[1].parent", "loops"),
    ("two-switches-one-port",
     lambda t: t["switch"].append({"name": "0000:0d:00.1", "parent": "0000:0c:00.0", "downstream": []}) or t,
     "switch[1].parent", "already links to switch"),
    ("when-without-module", _set(["window", 0, "when"], {"interleave_arithmetic": 0}),
     "window[0].when.interleave_arithmetic", "[module]"),
    ("when-unknown-param",
     lambda t: _set(["module"], {"name": "m", "params": {"a": 0}})(t) and
     _set(["window", 0, "when"], {"b": 1})(t),
     "window[0].when.b", "not a parameter"),
    ("node-distance-key", _set(["node", 0, "distances"], {"one": 20}),
     "node[0].distances.one", "not a node id"),
    ("node-offline-with-cpus", _set(["node", 0, "online"], False),
     "node[0].online", "online at boot"),
    ("auto-region-unknown-member", _set(["auto_region", 0, "members"], ["0000:0f:00.0", "mem9"]),
     "auto_region[0].members", "no memdev named 'mem9'"),
    ("auto-region-size", _set(["auto_region", 0, "size"], "256M"),
     "auto_region[0].size", "multiple of 2 x 256M"),
    ("auto-region-too-big", _set(["auto_region", 0, "size"], "8G"),
     "auto_region[0].size", "does not fit"),
    ("auto-region-off-target", _set(["auto_region", 0, "members"], ["0000:0f:00.0", "0000:35:00.0"]),
     "auto_region[0].members", "does not target"),
    ("auto-region-window", _set(["auto_region", 0, "window"], 2),
     "auto_region[0].window", "no window 2"),
    ("auto-region-decoder-order", _set(["auto_region", 0, "decoder"], 1),
     "auto_region[0].decoder", "in order"),
    ("acpi-hpa-base", _set(["acpi"], {"hpa_base": "0x1000"}),
     "acpi.hpa_base", "256M aligned"),
    ("auto-region-port-decoders", _second_auto_region_through_a_one_decoder_host_bridge,
     "auto_region[1].members", "'pci0000:0c' has 1 HDM decoders, and this is auto region 2 through it"),
]


@pytest.mark.parametrize("mutate,field,problem", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_topology(mutate, field, problem):
    t = mutate(copy.deepcopy(base()))
    with pytest.raises(TopologyError) as e:
        parse_topology(t, "bad.toml")
    msg = str(e.value)
    assert msg.startswith(f"bad.toml: {field}: "), msg
    assert problem in msg, msg
    assert "\n" not in msg


def test_bad_table_is_big_enough():
    assert len(BAD) >= 15


def test_load_names_the_file(tmp_path):
    p = tmp_path / "broken.toml"
    p.write_text('name = "x"\n[[memdev]]\nname = "cxl_mem.0"\nparent = "nowhere"\nram = "1G"\n'
                 '[module]\nname = "cxl_test"\n')
    with pytest.raises(TopologyError) as e:
        load_topology(str(p))
    assert str(e.value) == f"{p}: memdev[0].parent: no device named 'nowhere'"


def test_load_bad_toml(tmp_path):
    p = tmp_path / "syntax.toml"
    p.write_text('name = "x"\n[[memdev]\n')
    with pytest.raises(TopologyError) as e:
        load_topology(str(p))
    assert str(e.value).startswith(f"{p}: not valid TOML:")


def test_load_too_deep(tmp_path):
    """Nesting that exhausts the TOML parser's recursion is a topology error, not a traceback."""
    p = tmp_path / "deep.toml"
    p.write_text('description = "deep"\nx = ' + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(TopologyError) as e:
        load_topology(str(p))
    assert "nested too deeply" in str(e.value)


def test_load_missing_preset():
    with pytest.raises(TopologyError) as e:
        load_topology("no-such-preset")
    assert "no such topology file or preset" in str(e.value) and "qemu-hdm-db" in str(e.value)


def test_cli_refuses_bad_file(tmp_path):
    t = base()
    t["window"][0]["targets"] = [7]
    bad = tmp_path / "bad.toml"
    bad.write_text(_to_toml(t))
    assert parse_topology(base(), "ok")          # the serializer round-trips the valid base
    r = subprocess.run([sys.executable, "-m", "cxlsys", "tree", "-t", str(bad)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    assert r.stderr.strip() == f"cxlsys: {bad}: window[0].targets: no host bridge has uid 7"


def test_toml_round_trip(tmp_path):
    p = tmp_path / "base.toml"
    p.write_text(_to_toml(base()))
    assert load_topology(str(p)) == parse_topology(base(), str(p))


# ------------------------------------------------------------------ a tiny TOML writer for the tests

def _val(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_val(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f'"{k}" = {_val(x)}' for k, x in v.items()) + " }"
    raise TypeError(v)


def _to_toml(d: dict) -> str:
    out = [f"{k} = {_val(v)}" for k, v in d.items() if not isinstance(v, (dict, list)) or
           (isinstance(v, list) and not all(isinstance(x, dict) for x in v))]
    for k, v in d.items():
        if isinstance(v, dict):
            out.append(f"[{k}]")
            out += [f"{kk} = {_val(vv)}" for kk, vv in v.items()]
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for x in v:
                out.append(f"[[{k}]]")
                out += [f"{kk} = {_val(vv)}" for kk, vv in x.items()]
    return "\n".join(out) + "\n"
