"""``cxlsys record``: a sysfs tree -> a topology file that boots back to the same tree.

In-process: a model is written out as a snapshot (plain files, as the real /sys reads), recorded,
and the recording booted and dumped; through the real tools: ``cxl list`` and ``daxctl list`` inside
``cxlsys run`` of the original and of the recording.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib

import pytest

from cxlsys.cli.main import main
from cxlsys.snapshot import write_snapshot
from cxlsys.sysfs import Sysfs
from cxlsys.system import System
from cxlsys.testing import (
    RAM_REGION_SETUP,
    cxl_read,
    cxl_write,
    cxlsys_run,
    dax_blocks,
    endpoint_decoders,
    free_endpoint_decoders,
    memdev,
    provision_ram_region,
    read_value,
    write_text,
)
from cxlsys.topology import TopologyError, load_topology, parse_topology
from cxlsys.topology.generate import GenSpec, generate
from cxlsys.topology.record import Recording, record
from cxlsys.treedump import dump_model

# what a recording reproduces: the CXL bus, the dax bus, the host devices, memory blocks and nodes
ROOTS = ("/sys/bus/cxl", "/sys/bus/dax", "/sys/devices/platform", "/sys/devices/system/memory",
         "/sys/devices/system/node")
# descend everything but power/ and the subsystem links (the memory blocks too: their state and zone)
SKIP = re.compile(r"(^|/)(power|subsystem)$")
# A dax device's char device number (dev, and MAJOR/MINOR in its uevent) is handed out in the order
# the devices are created: at run time after the boot's regions on the original, at boot in
# assembly order on the recording, as on a real reboot.  No tool shows it; the names are the same.
DAX_DEVNO = re.compile(r"/dax\d+\.\d+/(dev|uevent)\t")


def dump(fs: Sysfs) -> list[str]:
    return [line for line in dump_model(fs, ROOTS, skip=SKIP) if not DAX_DEVNO.search(line)]


def recorded(fs: Sysfs, tmp_path, name: str = "snap") -> Recording:
    d = tmp_path / name
    write_snapshot(fs, str(d))
    return record(str(d))


def replay(rec: Recording, tmp_path) -> Sysfs:
    """Boot the recording from its file text (what ``cxlsys record -o`` writes)."""
    f = tmp_path / "recorded.toml"
    f.write_text(rec.text("test"))
    return Sysfs(System.boot(str(f)))


def assert_same(a: Sysfs, b: Sysfs) -> None:
    da, db = dump(a), dump(b)
    if da != db:
        only_a = sorted(set(da) - set(db))[:20]
        only_b = sorted(set(db) - set(da))[:20]
        raise AssertionError("trees differ:\n- " + "\n- ".join(only_a) + "\n+ " + "\n+ ".join(only_b))


def online(fs: Sysfs, dax: str, how: str = "online_movable") -> None:
    for b in dax_blocks(fs, dax):
        write_text(fs, f"devices/system/memory/{b}/state", how)


# ------------------------------------------------------------------------------ in-process round trips

def test_cxl_test_with_a_run_time_region_onlined_boots_back_identical(tmp_path):
    fs = Sysfs(System.boot("cxl_test"))
    region, dax = provision_ram_region(fs)          # region1 over host bridges 0 and 1, bound, kmem
    online(fs, dax)
    rec = recorded(fs, tmp_path)
    ars = rec.topology["auto_region"]
    assert [a["window"] for a in ars] == [0, 1]     # the firmware's region0, then the run-time region1
    assert ars[1]["online"] == "online_movable" and "online" not in ars[0]
    again = replay(rec, tmp_path)
    assert_same(fs, again)
    assert read_value(again, f"bus/cxl/devices/{region}/commit") == "1"
    assert {read_value(again, f"devices/system/memory/{b}/valid_zones") for b in dax_blocks(again, dax)} == {"Movable"}


def test_recording_of_a_recording_is_the_same_file(tmp_path):
    fs = Sysfs(System.boot("cxl_test"))
    provision_ram_region(fs)
    first = recorded(fs, tmp_path, "a")
    second = recorded(replay(first, tmp_path), tmp_path, "b")
    assert second.topology == first.topology
    assert second.not_represented == first.not_represented


def test_a_region_in_devdax_mode_is_recorded_and_comes_back_in_devdax(tmp_path):
    fs = Sysfs(System.boot("cxl_test"))
    _, dax = provision_ram_region(fs)
    write_text(fs, "bus/dax/drivers/kmem/unbind", dax)           # daxctl reconfigure-device -m devdax
    write_text(fs, "bus/dax/drivers/device_dax/new_id", dax)
    rec = recorded(fs, tmp_path)
    assert rec.topology["auto_region"][1]["dax_mode"] == "devdax"
    again = replay(rec, tmp_path)
    assert_same(fs, again)
    assert again.readlink(f"bus/dax/devices/{dax}/driver").endswith("/device_dax")


def test_a_7_3_kernel_shows_in_its_dax_state_file_and_is_recorded(tmp_path):
    fs = Sysfs(System.boot("cxl_test", kernel="7.3"))
    rec = recorded(fs, tmp_path)
    assert rec.topology["kernel"] == "7.3"
    assert_same(fs, replay(rec, tmp_path))
    assert "kernel" not in recorded(Sysfs(System.boot("cxl_test")), tmp_path, "b").topology     # 6.12: default


def test_kernel_zone_blocks_are_recorded_as_online_kernel(tmp_path):
    fs = Sysfs(System.boot("cxl_test"))
    _, dax = provision_ram_region(fs)
    online(fs, dax, "online_kernel")
    rec = recorded(fs, tmp_path)
    assert rec.topology["auto_region"][1]["online"] == "online_kernel"
    assert_same(fs, replay(rec, tmp_path))


# (large-2t records in half a second, but snapshotting its 16 384 memory blocks takes a minute here:
# the 64-memdev generated topology below stands for scale)
@pytest.mark.parametrize("preset", ["qemu-hdm-db", "bi-direct"])
def test_presets_record_and_replay_identically(preset, tmp_path):
    fs = Sysfs(System.boot(preset))
    assert_same(fs, replay(recorded(fs, tmp_path), tmp_path))


@pytest.mark.parametrize("spec", [
    GenSpec(host_bridges=2, root_ports=2, switch_ports=4, auto_region=2, auto_regions="every"),
    GenSpec(host_bridges=4, root_ports=1, interleave=True, pmem=1 << 30),
    GenSpec(host_bridges=2, root_ports=4, switch_ports=8, auto_region=4, auto_regions="every"),
], ids=["every-below-switches", "interleave+pmem", "64-memdevs-16-regions"])
def test_generated_topologies_record_and_replay_identically(spec, tmp_path):
    f = tmp_path / "gen.toml"
    f.write_text(generate(spec))
    fs = Sysfs(System.boot(str(f)))
    rec = recorded(fs, tmp_path)
    assert len(rec.topology.get("auto_region", [])) == len(load_topology(str(f)).auto_regions)
    assert_same(fs, replay(rec, tmp_path))


def test_region_memory_onlined_on_a_cpu_less_node_comes_back(tmp_path):
    """The window's node 1 is offline at boot and online once kmem's blocks are: recorded as a
    node that is offline at boot, the blocks' state as the region's ``online``."""
    f = tmp_path / "gen.toml"
    f.write_text(generate(GenSpec(host_bridges=1, root_ports=2, auto_region=2)))
    fs = Sysfs(System.boot(str(f)))
    online(fs, "dax0.0")
    assert read_value(fs, "devices/system/node/online") == "0-1"
    rec = recorded(fs, tmp_path)
    assert rec.topology["node"][1] == {"id": 1, "online": False}
    assert rec.topology["auto_region"][0]["online"] == "online_movable"
    assert_same(fs, replay(rec, tmp_path))


def test_a_generated_window_node_is_recorded_from_its_dax_device(tmp_path):
    f = tmp_path / "gen.toml"
    f.write_text(generate(GenSpec(host_bridges=2, root_ports=2, auto_region=2)))
    rec = recorded(Sysfs(System.boot(str(f))), tmp_path)
    assert rec.topology["window"][0]["node"] == 1               # its region's dax0.0 target_node
    assert "node" not in rec.topology["window"][1]               # no region there: not in sysfs ...
    assert any(line.startswith("the NUMA node of decoder0.1 ") for line in rec.not_represented)  # ... said


def test_an_awkward_firmware_version_survives_the_file(tmp_path):
    data = preset_data("qemu-hdm-db")
    data["memdev"][0]["firmware_version"] = 'v"1\\2\ttab'
    fs = Sysfs(System.boot(parse_topology(data, "q.toml")))
    rec = recorded(fs, tmp_path)
    assert rec.topology["memdev"][0]["firmware_version"] == 'v"1\\2\ttab'
    assert tomllib.loads(rec.text())["memdev"][0]["firmware_version"] == 'v"1\\2\ttab'


# ------------------------------------------------------------------------------ not represented: listed

def test_what_the_format_cannot_say_is_listed(tmp_path):
    fs = Sysfs(System.boot("cxl_test"))
    # an uncommitted region, and DPA allocated for it on two endpoint decoders
    decs = free_endpoint_decoders(fs.sys, "decoder0.1")
    for e in decs:
        cxl_write(fs, f"{e}/mode", "ram")
        cxl_write(fs, f"{e}/dpa_size", "0x10000000")
    r = cxl_read(fs, "decoder0.1/create_ram_region")
    cxl_write(fs, "decoder0.1/create_ram_region", r)
    rec = recorded(fs, tmp_path)
    text = "\n".join(rec.not_represented)
    assert f"{r}: not committed" in text
    for e in decs:
        assert f"{e} (" in text and "without a recorded region" in text
    assert "HDM decoder target counts" in text
    assert len(rec.topology["auto_region"]) == 1                # only the firmware's region0
    # the file says it too, as comments, and still loads
    body = rec.text("now")
    assert f"#   {r}: not committed" in body
    parse_topology(tomllib.loads(body), "recorded")


def test_a_pmem_region_after_the_ram_partition_is_listed_not_recorded(tmp_path):
    """cxl_test's memdevs have 1G ram then 1G pmem: a pmem region's DPA starts after a skip over
    the ram, which firmware decoders of the format (back to back from DPA 0) cannot say."""
    s = System.boot("cxl_test")
    fs = Sysfs(s)
    e = next(x.name for x in endpoint_decoders(memdev(s, "cxl_mem.2")) if x.dpa_start is None)
    cxl_write(fs, f"{e}/mode", "pmem")
    cxl_write(fs, f"{e}/dpa_size", "0x10000000")
    r = cxl_read(fs, "decoder0.2/create_pmem_region")
    cxl_write(fs, "decoder0.2/create_pmem_region", r)
    for attr, v in (("uuid", "c0a8e5b4-0d1a-4c2e-9b7e-1f2a3b4c5d6e"), ("interleave_granularity", 4096),
                    ("interleave_ways", 1), ("size", "0x10000000"), ("target0", e), ("commit", 1)):
        cxl_write(fs, f"{r}/{attr}", v)
    rec = recorded(fs, tmp_path)
    assert f"{r}: {e} (mem2): DPA 0x40000000 after a skip (firmware decoders map DPA back to back from 0): " \
           "not recorded" in rec.not_represented
    assert len(rec.topology["auto_region"]) == 1
    parse_topology(tomllib.loads(rec.text()), "recorded")       # and the rest still loads


def test_a_memdev_its_driver_let_go_is_listed(tmp_path):
    fs = Sysfs(System.boot("cxl_test"))
    write_text(fs, "bus/platform/drivers/cxl_mock_mem/unbind", "cxl_mem.9")     # mem9 and endpoint go
    rec = recorded(fs, tmp_path)
    assert "cxl_mem.9 (below cxl_switch_dport.9): not a CXL port or memdev on the CXL bus: not recorded" \
        in rec.not_represented
    assert "cxl_mem.9" not in {m["name"] for m in rec.topology["memdev"]}


def test_xor_windows_and_their_stray_firmware_decoders_are_listed(tmp_path):
    """interleave_arithmetic=1: cxl_test commits its auto region's decoders at HPA 0 (no window
    there), and the windows are XOR: neither is in the recording, both are said."""
    fs = Sysfs(System.boot("cxl_test", {"interleave_arithmetic": 1}))
    rec = recorded(fs, tmp_path)
    text = "\n".join(rec.not_represented)
    assert "interleave arithmetic" in text and "committed without a region" in text
    assert rec.topology["module"] == {"name": "cxl_test", "params": {"interleave_arithmetic": 1}}


def test_blocks_in_mixed_states_are_listed(tmp_path):
    fs = Sysfs(System.boot("cxl_test"))
    _, dax = provision_ram_region(fs)
    first = dax_blocks(fs, dax)[0]
    write_text(fs, f"devices/system/memory/{first}/state", "online_movable")
    rec = recorded(fs, tmp_path)
    assert any("different states" in line for line in rec.not_represented)
    assert "online" not in rec.topology["auto_region"][1]


# ------------------------------------------------------------------------------ the format extension

def preset_data(name: str) -> dict:
    with open(load_topology(name).source, "rb") as f:
        return tomllib.load(f)


def _with_auto(**fields) -> dict:
    """cxl_test with its auto region given ``fields``."""
    data = preset_data("cxl_test")
    data["auto_region"][0].update(fields)
    return data


@pytest.mark.parametrize("fields, msg", [
    ({"online": "online_movable", "dax_mode": "devdax"},
     "auto_region[0].online: 'online_movable' with dax_mode = 'devdax'"),
    ({"online": "yes"}, "auto_region[0].online"),
    ({"dax_mode": "kmem"}, "auto_region[0].dax_mode"),
])
def test_dax_state_fields_are_checked(fields, msg):
    with pytest.raises(TopologyError) as e:
        parse_topology(_with_auto(**fields), "t.toml")
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_dax_state_on_a_pmem_auto_region_is_refused():
    data = preset_data("cxl_test")
    data["auto_region"] = [{"window": 2, "size": "512M", "members": ["cxl_mem.0"], "decoder": 0, "online": "offline"}]
    data["memdev"][0]["ram"] = 0
    with pytest.raises(TopologyError, match=r"auto_region\[0\]\.online: .* decodes pmem"):
        parse_topology(data, "t.toml")


def test_online_is_applied_at_boot_and_again_after_a_module_reload():
    data = _with_auto(online="online_movable")
    s = System.boot(parse_topology(data, "t.toml"))
    fs = Sysfs(s)

    def zones() -> set:
        return {read_value(fs, f"devices/system/memory/{b}/valid_zones") for b in dax_blocks(fs, "dax0.0")}

    assert zones() == {"Movable"}
    s.modprobe(["-r", "cxl_test"])
    s.modprobe(["cxl_test"])
    assert zones() == {"Movable"}                   # as a udev rule runs on every add


# ------------------------------------------------------------------------------ the command

def test_cli_writes_a_file_that_loads_and_says_what_it_left_out(tmp_path, capsys):
    snap = tmp_path / "snap"
    write_snapshot(Sysfs(System.boot("qemu-hdm-db")), str(snap))
    out = tmp_path / "q.toml"
    assert main(["record", "--root", str(snap), "-o", str(out), "--name", "qemu-again"]) == 0
    err = capsys.readouterr().err
    assert "cxlsys record: not represented: hdm_db and flit" in err
    t = load_topology(str(out))
    assert t.name == "qemu-again" and t.kernel == "6.12+bi" and len(t.memdevs) == 4
    assert out.read_text().startswith(f"# recorded by cxlsys record from {snap} at ")


@pytest.mark.parametrize("where, msg", [
    ("missing", "no such directory"),
    ("a-file", "not a directory"),
    ("empty", "no CXL here (no bus/cxl/devices)"),
    ("no-root0", "no CXL root (no bus/cxl/devices/root0: is cxl_acpi loaded?)"),
])
def test_cli_errors_are_one_line_and_exit_2(where, msg, tmp_path, capsys):
    root = tmp_path / where
    if where == "a-file":
        root.write_text("")
    elif where == "empty":
        root.mkdir()
    elif where == "no-root0":
        (root / "bus/cxl/devices").mkdir(parents=True)
    assert main(["record", "--root", str(root)]) == 2
    cap = capsys.readouterr()
    assert cap.err == f"cxlsys record: {root}: {msg}\n" and cap.out == ""


# ------------------------------------------------------------------------------ through the real tools

@pytest.mark.mount
@pytest.mark.parametrize("step, check", [
    ("daxctl online-memory $dev", lambda dev: dev["mode"] == "system-ram" and dev["online_memblocks"] == 8),
    ("daxctl reconfigure-device -f -m devdax $dev", lambda dev: dev["mode"] == "devdax"),
], ids=["onlined", "devdax"])
def test_round_trip_through_cxl_and_daxctl(step, check, tmp_path):
    """cxl_test with a ram region made at run time (sysfs writes: cxl 76.1 refuses create-region -t
    ram), enabled with cxl, then onlined or reconfigured to devdax with daxctl; recorded inside the
    run; the recording run again.  ``cxl list -BPEMDTR -i`` and ``daxctl list -RDM`` are JSON-equal,
    in order too: the tools list in readdir order, which is kernfs's name-hash order (as on a
    kernel), not the order the devices were made in (the recording's boot makes dax1.0 first)."""
    rec = tmp_path / "rec.toml"
    first = cxlsys_run(RAM_REGION_SETUP + f'''
    echo 1 > $d/$r/commit
    cxl enable-region $r
    dev=dax${{r#region}}.0
    {step} >/dev/null 2>&1
    cxl list -BPEMDTR -i > {tmp_path}/cxl1.json
    daxctl list -RDM > {tmp_path}/dax1.json
    {sys.executable} -m cxlsys record -o {rec}
    ''')
    assert "not represented" in first.stderr
    cxlsys_run(f'''
    cxl list -BPEMDTR -i > {tmp_path}/cxl2.json
    daxctl list -RDM > {tmp_path}/dax2.json
    ''', topology=str(rec))
    c1, c2 = (json.loads((tmp_path / f"cxl{i}.json").read_text()) for i in (1, 2))
    assert c1 == c2
    d1, d2 = (json.loads((tmp_path / f"dax{i}.json").read_text()) for i in (1, 2))
    assert d1 == d2
    by_id = {r["id"]: r for r in d1}
    assert sorted(by_id) == [0, 1] and check(by_id[1]["devices"][0])


@pytest.mark.mount
def test_record_of_a_mount_point(tmp_path):
    """--root at a running 'cxlsys mount' (here the run's own /sys) is the same as /sys."""
    out = cxlsys_run(f"{sys.executable} -m cxlsys record --root /sys/ 2>/dev/null | tail -n +2 > {tmp_path}/a.toml\n"
                     f"{sys.executable} -m cxlsys record 2>/dev/null | tail -n +2 > {tmp_path}/b.toml")
    assert out.returncode == 0
    a, b = (tmp_path / "a.toml").read_text(), (tmp_path / "b.toml").read_text()
    assert a == b and "[[memdev]]" in a


def test_devdax_at_boot_offlines_what_the_policy_onlined_first():
    """dax_mode = "devdax" with auto_online_blocks = "online": kmem onlined the blocks as it bound, so
    the boot-time reconfiguration offlines them first (daxctl reconfigure-device -f), then hands the
    device to device_dax; nothing is left stuck online."""
    doc = tomllib.loads(generate(GenSpec(host_bridges=1, root_ports=2, auto_region=2)))
    doc.setdefault("system", {})["auto_online_blocks"] = "online"
    doc["auto_region"][0]["dax_mode"] = "devdax"
    s = System.boot(parse_topology(doc, "devdax-online"))
    fs = Sysfs(s)
    assert fs.readlink("bus/dax/devices/dax0.0/driver").endswith("/device_dax")
    assert not any("cannot be hotremoved" in line or "dax0.0: probe failed" in line for line in s.klog.lines())
    assert not [b for b in fs.listdir("devices/system/memory") if b.startswith("memory")]   # all removed
    assert b"System RAM (kmem)" not in fs.read(".cxlsys/proc/iomem")
