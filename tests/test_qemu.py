"""``cxlsys import-qemu`` / ``export-qemu`` (cxlsys/topology/qemu.py): the LPC 2025 HDM-DB command
line imports to exactly the ``qemu-hdm-db`` preset, export -> import round-trips, and every
command line or topology that cannot be converted is refused with one line and exit status 2."""

from __future__ import annotations

import difflib
import tomllib

import pytest

from cxlsys.cli.main import main
from cxlsys.sysfs import Sysfs
from cxlsys.system import System
from cxlsys.testing import cxlsys_run
from cxlsys.topology import FIXTURES, Topology, load_topology, parse_topology
from cxlsys.topology.qemu import QemuError, format_command_line, parse_qemu_argv, split_command_line, to_qemu_argv
from cxlsys.topology.tomltext import toml_text
from cxlsys.treedump import dump_model

ROOTS = ["/sys/bus/cxl", "/sys/bus/dax", "/sys/devices"]

# docs/system/devices/cxl.rst's HDM-DB example as the LPC 2025 talk shows it (qemu-hdm-db.toml's
# header), with the "..." written out; as a file would hold it: comments, continuations
LPC = r"""# LPC 2025 "CXL HDM-DB Support in Linux"
qemu-system-x86_64 -M q35,cxl=on -m 4G,maxmem=8G,slots=8 -smp 4 \
  -object memory-backend-ram,id=cxl-mem0,share=on,size=256M \
  -object memory-backend-ram,id=cxl-mem1,share=on,size=256M \
  -object memory-backend-ram,id=cxl-mem2,share=on,size=256M \
  -object memory-backend-ram,id=cxl-mem3,share=on,size=256M \
  -device pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.1 \
  -device cxl-rp,port=0,bus=cxl.1,id=root_port0,chassis=0,slot=0 \
  -device cxl-rp,port=1,bus=cxl.1,id=root_port1,chassis=0,slot=1 \
  -device cxl-upstream,bus=root_port0,id=us0,x-256b-flit=on \
  -device cxl-downstream,port=0,bus=us0,id=swport0,chassis=0,slot=4 \
  -device cxl-type3,bus=swport0,volatile-memdev=cxl-mem0,id=cxl-mem0,sn=0x1,x-256b-flit=on,hdm-db=on \
  -device cxl-downstream,port=1,bus=us0,id=swport1,chassis=0,slot=5 \
  -device cxl-type3,bus=swport1,volatile-memdev=cxl-mem1,id=cxl-mem1,sn=0x2,x-256b-flit=on,hdm-db=on \
  -device cxl-downstream,port=2,bus=us0,id=swport2,chassis=0,slot=6 \
  -device cxl-type3,bus=swport2,volatile-memdev=cxl-mem2,id=cxl-mem2,sn=0x3 \
  -device cxl-downstream,port=3,bus=us0,id=swport3,chassis=0,slot=7 \
  -device cxl-type3,bus=swport3,volatile-memdev=cxl-mem3,id=cxl-mem3,sn=0x4 \
  -M cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=4G,cxl-fmw.0.interleave-granularity=4k   # 4G window
"""

# hand-written command lines, each a shape QEMU can build
PMEM_LSA = ("-M q35,cxl=on -m 2G -smp 2 -nographic "
            "-object memory-backend-file,id=cxl-mem1,share=on,mem-path=cxltest.raw,size=512M "
            "-object memory-backend-file,id=cxl-lsa1,share=on,mem-path=lsa.raw,size=1M "
            "-device pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.1 "
            "-device cxl-rp,port=0,bus=cxl.1,id=root_port13,chassis=0,slot=2 "
            "-device cxl-type3,bus=root_port13,persistent-memdev=cxl-mem1,lsa=cxl-lsa1,id=cxl-pmem0,sn=0x99 "
            "-M cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=4G")
TWO_PXB_X2 = ("-machine q35,cxl=on -m 4G -smp 4 -netdev user,id=n0 -device virtio-net-pci,netdev=n0 "
              "-object memory-backend-ram,id=vmem0,share=on,size=1G "
              "-object memory-backend-ram,id=vmem1,share=on,size=1G "
              "-object memory-backend-ram,id=vmem2,share=on,size=1G "
              "-device pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.1,numa_node=0 "
              "-device pxb-cxl,bus_nr=222,bus=pcie.0,id=cxl.2 "
              "-device cxl-rp,port=0,bus=cxl.1,id=root_port13,chassis=0,slot=2 "
              "-device cxl-type3,bus=root_port13,volatile-memdev=vmem0,id=cxl-vmem0 "
              "-device cxl-rp,port=1,bus=cxl.1,id=root_port14,chassis=0,slot=3 "
              "-device cxl-rp,port=0,bus=cxl.2,id=root_port15,chassis=0,slot=5 "
              "-device cxl-type3,bus=root_port15,volatile-memdev=vmem1,id=cxl-vmem1,sn=0x2 "
              "-device cxl-rp,port=1,bus=cxl.2,id=root_port16,chassis=0,slot=6,addr=4 "
              "-device cxl-type3,bus=root_port16,volatile-memdev=vmem2,id=cxl-vmem2,sn=0x3 "
              "-M cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.targets.1=cxl.2,cxl-fmw.0.size=8G,"
              "cxl-fmw.0.interleave-granularity=8k")
SEVERAL_WINDOWS = ("-M q35 -M cxl=on -m 8G,maxmem=16G,slots=4 -smp cpus=2 "
                   "-object memory-backend-ram,id=m0,size=2G -object memory-backend-ram,id=m1,size=1G "
                   "-object memory-backend-ram,id=p1,size=1G -object memory-backend-ram,id=l1,size=2M "
                   "-device pxb-cxl,bus_nr=52,bus=pcie.0,id=hb0,hdm_for_passthrough=on "
                   "-device pxb-cxl,bus_nr=64,bus=pcie.0,id=hb1 "
                   "-device cxl-rp,port=2,bus=hb0,id=rp0,chassis=0,slot=1,x-256b-flit=on "
                   "-device cxl-type3,bus=rp0,volatile-memdev=m0,id=d0,sn=7,x-256b-flit=on "
                   "-device cxl-rp,port=0,bus=hb1,id=rp1,chassis=1,slot=1 "
                   "-device cxl-upstream,bus=rp1,id=us0 "
                   "-device cxl-downstream,port=5,bus=us0,id=ds0,chassis=1,slot=2 "
                   "-device cxl-downstream,port=6,bus=us0,id=ds1,chassis=1,slot=3 "
                   "-device cxl-type3,bus=ds1,volatile-memdev=m1,persistent-memdev=p1,lsa=l1,id=d1,sn=8 "
                   "-M cxl-fmw.0.targets.0=hb0,cxl-fmw.0.size=4G,"
                   "cxl-fmw.1.targets.0=hb1,cxl-fmw.1.size=2G,cxl-fmw.1.interleave-granularity=1k,"
                   "cxl-fmw.2.targets.0=hb1,cxl-fmw.2.targets.1=hb0,cxl-fmw.2.size=8G")
LINES = {"pmem-lsa": PMEM_LSA, "two-pxb-x2": TWO_PXB_X2, "several-windows": SEVERAL_WINDOWS}


def _topology(argv: list[str], name: str = "qemu") -> Topology:
    return parse_topology(tomllib.loads(toml_text(parse_qemu_argv(argv, name))), name)


def _dump(t: Topology | str) -> list[str]:
    return list(dump_model(Sysfs(System.boot(t)), ROOTS))


def _same(a: list[str], b: list[str]) -> None:
    assert a == b, "\n".join(list(difflib.unified_diff(a, b, lineterm=""))[:40])


def test_lpc_command_line_imports_to_the_qemu_hdm_db_preset():
    t = _topology(split_command_line(LPC), "lpc")
    preset = load_topology("qemu-hdm-db")
    assert t.hpa_base == preset.hpa_base == 0x490000000       # -m 4G,maxmem=8G,slots=8 on q35
    assert [m.name for m in t.memdevs] == ["0000:0f:00.0", "0000:10:00.0", "0000:11:00.0", "0000:12:00.0"]
    assert t.kernel == "6.12-bi"
    _same(_dump(t), _dump("qemu-hdm-db"))


@pytest.mark.mount
def test_lpc_import_lists_as_qemu_hdm_db_through_the_real_cxl_tool(tmp_path):
    f = tmp_path / "lpc.sh"
    f.write_text(LPC)
    out = tmp_path / "lpc.toml"
    assert main(["import-qemu", "-o", str(out), str(f)]) == 0
    script = "cxl list -BPEMDTR -i"
    imported = cxlsys_run(script, topology=str(out)).stdout
    assert '"memdev":"mem0"' in imported.replace(" ", "")
    assert imported == cxlsys_run(script, topology="qemu-hdm-db").stdout


@pytest.mark.parametrize("preset", ["qemu-hdm-db", "bi-direct"])
def test_presets_export_and_import_back_identically(preset):
    argv = to_qemu_argv(load_topology(preset))
    assert argv[0] == "qemu-system-x86_64"
    back = _topology(argv[1:], preset)
    _same(_dump(back), _dump(preset))
    assert to_qemu_argv(back) == argv


def test_lpc_export_is_the_lpc_line_regrouped():
    """export(import(LPC)): the same options, the downstream ports together and the slots renumbered."""
    argv = to_qemu_argv(_topology(split_command_line(LPC)))
    lpc = split_command_line(LPC)
    assert argv[:7] == ["qemu-system-x86_64"] + lpc[:6]
    assert sorted(a for a in argv if a.startswith("cxl-type3")) == sorted(a for a in lpc if a.startswith("cxl-type3"))
    assert argv[-1] == lpc[-1]


@pytest.mark.parametrize("name", LINES)
def test_hand_written_lines_round_trip(name, tmp_path):
    t = _topology(LINES[name].split(), name)
    argv = to_qemu_argv(t)
    back = _topology(argv[1:], name)
    _same(_dump(back), _dump(t))
    assert to_qemu_argv(back) == argv                   # export(import(argv)) is stable


def test_what_the_hand_written_lines_import_to():
    t = _topology(PMEM_LSA.split())
    (md,) = t.memdevs
    assert (md.name, md.pmem, md.ram, md.lsa, md.serial) == ("0000:0d:00.0", 512 << 20, 0, 1 << 20, 0x99)
    assert t.host_bridges[0].decoders == 0                  # one root port: passthrough
    assert t.windows[0].restrictions == 0x0F and t.kernel is None
    assert t.hpa_base == 0x110000000                        # -m 2G: RAM below 4G only, +1M, 256M up

    t = _topology(TWO_PXB_X2.split())
    assert [h.name for h in t.host_bridges] == ["pci0000:0c", "pci0000:de"]
    assert [r.name for r in t.root_ports] == ["0000:0c:00.0", "0000:0c:01.0", "0000:de:00.0", "0000:de:04.0"]
    assert [m.name for m in t.memdevs] == ["0000:0d:00.0", "0000:df:00.0", "0000:e0:00.0"]
    assert [m.numa_node for m in t.memdevs] == [0, -1, -1]
    assert (t.windows[0].targets, t.windows[0].granularity) == ([12, 222], 8192)

    t = _topology(SEVERAL_WINDOWS.split())
    assert [h.decoders for h in t.host_bridges] == [4, 0]   # hdm_for_passthrough=on, then a passthrough
    assert [m.name for m in t.memdevs] == ["0000:35:00.0", "0000:44:00.0"]     # 0x43: ds0's, empty
    assert [sw.downstream[1].name for sw in t.switches] == ["0000:42:01.0"]
    assert [(w.node, w.targets) for w in t.windows] == [(1, [52]), (2, [64]), (3, [64, 52])]
    assert [n.id for n in t.nodes] == [0, 1, 2, 3] and t.nodes[0].memory == 8 << 30
    assert t.root_ports[0].flit == 256 and t.memdevs[0].flit == 256


# ---------------------------------------------------------------------------- refusals

BASE = ("-M q35,cxl=on -m 4G -object memory-backend-ram,id=m0,size=256M "
        "-device pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.1 -device cxl-rp,port=0,bus=cxl.1,id=rp0,chassis=0,slot=0 ")
T3 = "-device cxl-type3,bus=rp0,volatile-memdev=m0,id=d0 "
FMW = "-M cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=4G"

# (id, command line, what the one line must say)
IMPORT_ERRORS = [
    ("unknown-cxl-device", BASE + "-device cxl-accel,bus=rp0 " + FMW, "-device cxl-accel: not a device cxlsys models"),
    ("unknown-property", BASE + "-device cxl-type3,bus=rp0,volatile-memdev=m0,id=d0,foo=1 " + FMW,
     "cxl-type3 'd0': unknown property 'foo'"),
    ("bus-names-nothing", BASE + "-device cxl-type3,bus=rp9,volatile-memdev=m0,id=d0 " + FMW,
     "cxl-type3 'd0': bus 'rp9' names no device"),
    ("bus-wrong-kind", BASE + "-device cxl-type3,bus=cxl.1,volatile-memdev=m0,id=d0 " + FMW,
     "cxl-type3 'd0': bus 'cxl.1' is a pxb-cxl"),
    ("backend-missing", BASE + "-device cxl-type3,bus=rp0,volatile-memdev=m9,id=d0 " + FMW,
     "cxl-type3 'd0': volatile-memdev 'm9' is not a memory-backend"),
    ("size-not-256M", BASE.replace("size=256M", "size=100M") + T3 + FMW,
     "cxl-type3 'd0': volatile-memdev 'm0': 100M is not a multiple of 256M"),
    ("cxl-off", BASE.replace("q35,cxl=on", "q35") + T3, "pxb-cxl 'cxl.1': CXL host bridges need -M cxl=on"),
    ("not-q35", BASE.replace("q35,cxl=on", "pc,cxl=on") + T3 + FMW, "-M pc: cxlsys imports q35 machines"),
    ("fmw-target-no-pxb", BASE + T3 + "-M cxl-fmw.0.targets.0=cxl.9,cxl-fmw.0.size=4G",
     "cxl-fmw.0.targets.0: no pxb-cxl has id 'cxl.9'"),
    ("fmw-size", BASE + T3 + "-M cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=1000M",
     "cxl-fmw.0.size: 1000M is not a non-zero multiple of 256M"),
    ("fmw-unknown-key", BASE + T3 + FMW + ",cxl-fmw.0.qtg=1", "-M cxl-fmw.0.qtg: unknown cxl-fmw property"),
    ("fmw-ways", BASE + T3 + "-device pxb-cxl,bus_nr=40,id=c2 -device pxb-cxl,bus_nr=50,id=c3 -device "
     "pxb-cxl,bus_nr=60,id=c4 -device pxb-cxl,bus_nr=70,id=c5 -M cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.targets.1=c2,"
     "cxl-fmw.0.targets.2=c3,cxl-fmw.0.targets.3=c4,cxl-fmw.0.targets.4=c5,cxl-fmw.0.size=5G",
     "cxl-fmw.0.targets: 5 targets: the interleave ways are"),
    ("dc-memdev", BASE + "-device cxl-type3,bus=rp0,volatile-dc-memdev=m0,num-dc-regions=2,id=d0 " + FMW,
     "cxl-type3 'd0': volatile-dc-memdev: dynamic capacity (DCD) is not modelled"),
    ("pmem-without-lsa", BASE + "-device cxl-type3,bus=rp0,persistent-memdev=m0,id=d0 " + FMW,
     "cxl-type3 'd0': persistent memory needs lsa="),
    ("hdm-db-without-flit", BASE + "-device cxl-type3,bus=rp0,volatile-memdev=m0,id=d0,hdm-db=on " + FMW,
     "cxl-type3 'd0': hdm-db=on needs x-256b-flit=on"),
    ("no-memdev", BASE + "-device cxl-type3,bus=rp0,id=d0 " + FMW,
     "cxl-type3 'd0': needs volatile-memdev or persistent-memdev"),
    ("slot-below-port", BASE + "-device cxl-type3,bus=rp0,volatile-memdev=m0,id=d0,addr=3 " + FMW,
     "cxl-type3 'd0': addr '3': below a PCIe port only slot 0 exists"),
    ("slot-in-use", BASE + "-device cxl-rp,port=1,bus=cxl.1,id=rp1,chassis=0,slot=1,addr=0 " + T3 + FMW,
     "cxl-rp 'rp1': slot 00.0 of bus 'cxl.1' is already in use"),
    ("chassis-slot-twice", BASE + "-device cxl-rp,port=1,bus=cxl.1,id=rp1,chassis=0,slot=0 " + T3 + FMW,
     "cxl-rp 'rp1': chassis=0,slot=0 is already cxl-rp 'rp0''s"),
    ("bus-ranges-overlap", BASE + T3 + "-device pxb-cxl,bus_nr=13,id=cxl.2 " + FMW,
     "pxb-cxl 'cxl.1': its buses 0x0c..0x0d run into pxb-cxl 'cxl.2'"),
    ("other-device-on-cxl-bus", BASE + "-device virtio-net-pci,bus=rp0 " + FMW,
     "virtio-net-pci (the 3rd -device): bus 'rp0' is a CXL cxl-rp"),
    ("pxb-numa-node", BASE.replace("id=cxl.1", "id=cxl.1,numa_node=1") + T3 + FMW,
     "pxb-cxl 'cxl.1': numa_node 1: without -numa the guest has node 0 only"),
    ("numa", BASE + T3 + FMW + " -numa node,nodeid=0", "-numa node,nodeid=0: not supported by import-qemu"),
    ("maxmem-without-slots", BASE.replace("-m 4G", "-m 4G,maxmem=8G") + T3 + FMW,
     "-m: maxmem above the initial memory needs slots="),
    ("no-pxb", "-M q35,cxl=on -m 4G", "no -device pxb-cxl: nothing CXL to import"),
    ("missing-value", BASE + T3 + FMW + " -smp", "-smp: needs a value"),
]


@pytest.mark.parametrize("line, says", [r[1:] for r in IMPORT_ERRORS], ids=[r[0] for r in IMPORT_ERRORS])
def test_import_refusals_are_one_line_and_exit_2(line, says, capsys):
    assert main(["import-qemu", "--", *line.split()]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"cxlsys import-qemu: {says}"), err
    with pytest.raises(QemuError):
        parse_qemu_argv(line.split())


def _edited(tmp_path, preset: str, edit) -> str:
    doc = tomllib.loads((FIXTURES / f"{preset}.toml").read_text())
    edit(doc)
    f = tmp_path / "edited.toml"
    f.write_text(toml_text(doc))
    return str(f)


EXPORT_ERRORS = [
    ("cxl_test", None, "module: 'cxl_test': a module-loaded topology"),
    ("large-2t", None, "auto_region[0]: QEMU's firmware commits no HDM decoders"),
    ("qemu-hdm-db", lambda d: d["memdev"][0].update(payload_max=4096), "memdev[0].payload_max: 4096: QEMU gives 2048"),
    ("qemu-hdm-db", lambda d: d["memdev"][1].update(name="0000:20:00.0"),
     "memdev[1].name: '0000:20:00.0': QEMU's guest names it '0000:10:00.0'"),
    ("qemu-hdm-db", lambda d: d["window"][0].update(restrictions=["type3", "volatile"]),
     "window[0].restrictions: type3, volatile: QEMU gives type2, type3, volatile, bi"),
    ("qemu-hdm-db", lambda d: d["window"][0].update(arithmetic="xor"), "window[0].arithmetic: QEMU's CFMWS use"),
    ("qemu-hdm-db", lambda d: d["acpi"].update(hpa_base="0x100000000"), "acpi.hpa_base: 0x100000000: with -m 4G"),
    ("qemu-hdm-db", lambda d: d["node"][1].update(id=5) or d["window"][0].update(node=5),
     "node[1].id: 5: QEMU gives 1"),
    ("bi-direct", lambda d: d["window"][0].update(base="0x490000000"), "window[0].base: QEMU places the windows"),
    ("bi-direct", lambda d: d["memdev"][0].update(device_type=2), "memdev[0].device_type: QEMU emulates type-3"),
    ("bi-direct", lambda d: d["host_bridge"][0].update(uid=300, name="pci0000:0c") or d["window"][0].update(
        targets=[300]), "host_bridge[0].uid: 300: a pxb-cxl's uid is its bus_nr"),
    ("bi-direct", lambda d: d["host_bridge"][0].update(uid=0) or d["window"][0].update(targets=[0]),
     "host_bridge[0].uid: 0: a pxb-cxl's uid is its bus_nr (1..255)"),
]


@pytest.mark.parametrize("preset, edit, says", [r for r in EXPORT_ERRORS],
                         ids=[f"{r[0]}-{r[2].split(':')[0]}" for r in EXPORT_ERRORS])
def test_export_refusals_are_one_line_and_exit_2(preset, edit, says, tmp_path, capsys):
    topo = preset if edit is None else _edited(tmp_path, preset, edit)
    assert main(["export-qemu", "-t", topo]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"cxlsys export-qemu: {says}"), err


# ---------------------------------------------------------------------------- the commands

def test_cli_writes_a_file_tree_loads_and_export_prints_a_runnable_line(tmp_path, capsys):
    f = tmp_path / "lpc.sh"
    f.write_text(LPC)
    out = tmp_path / "lpc.toml"
    assert main(["import-qemu", str(f), "-o", str(out), "--name", "lpc"]) == 0
    assert "cxlsys import-qemu: " in capsys.readouterr().err
    assert main(["tree", "-t", str(out)]) == 0
    tree = capsys.readouterr().out
    assert tree.startswith("lpc") and "endpoint3" in tree and "mem3" in tree
    assert main(["export-qemu", "-t", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("qemu-system-x86_64 -M q35,cxl=on -m 4G,maxmem=8G,slots=8 -smp 4 \\\n")
    assert split_command_line(text) == to_qemu_argv(load_topology("qemu-hdm-db"))[1:]
    assert text == format_command_line(to_qemu_argv(load_topology(str(out))))
    # argv after --, to standard output; the header keeps the command line as comments
    assert main(["import-qemu", "--", *split_command_line(LPC)]) == 0
    doc = capsys.readouterr().out
    assert doc.startswith("# imported by cxlsys import-qemu from <argv>:\n# qemu-system-x86_64 -M q35,cxl=on")
    assert tomllib.loads(doc)["acpi"]["hpa_base"] == "0x490000000"


def test_split_command_line_reads_files_as_a_shell_does():
    text = "qemu-system-x86_64 -m 1G \\\n  -name 'a b'#not-a-comment \\\n  # a comment line\n  -smp 2 # trailing\n"
    assert split_command_line(text) == ["-m", "1G", "-name", "a b#not-a-comment", "-smp", "2"]
