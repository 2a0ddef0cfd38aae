"""HDM-DB Back-Invalidate (the 6.12-bi profile): the LPC 2025 flow and the kernel-faithful outcomes."""

import errno
from pathlib import Path

import pytest

from cxlsys.errors import KernelError
from cxlsys.sysfs import Sysfs
from cxlsys.system import System
from cxlsys.testing import (
    cxl_read,
    cxl_write,
    cxlsys_run,
    endpoint_decoders,
    memdev,
    memdevs,
)

ROOT = Path(__file__).resolve().parent.parent
FLOW = (ROOT / "examples" / "lpc2025-hdm-db-flow.sh").read_text()


def _first_decoders(s):
    """serial -> first endpoint decoder name"""
    return {m.info.serial: endpoint_decoders(m)[0].name for m in memdevs(s)}


def _new_region(fs, create_attr, ways=2, size="0x20000000", gran=4096):
    """The two-step create handshake on decoder0.0, then granularity, ways and size."""
    r = cxl_read(fs, f"decoder0.0/{create_attr}")
    cxl_write(fs, f"decoder0.0/{create_attr}", r)
    cxl_write(fs, f"{r}/interleave_granularity", gran)
    cxl_write(fs, f"{r}/interleave_ways", ways)
    cxl_write(fs, f"{r}/size", size)
    return r


def _states(fs):
    base = "kernel/debug/cxlsys/bi"
    return {c: fs.read(f"{base}/{c}/state").decode().strip() for c in fs.listdir(base)}


def test_flow_in_process():
    s = System.boot("bi-direct")
    fs = Sysfs(s)
    for line in FLOW.splitlines():
        if line.startswith("echo "):
            val, path = line[5:].split(" > ")
            fs.write(path[len("/sys/"):], f"{val}\n".encode())
    assert cxl_read(fs, "region0/commit") == "1" and cxl_read(fs, "decoder2.0/bi") == "1"
    start, size = cxl_read(fs, "region0/resource"), cxl_read(fs, "region0/size")
    for d in ("decoder2.0", "decoder1.0"):
        assert cxl_read(fs, f"{d}/start") == start and cxl_read(fs, f"{d}/size") == size == "0x20000000"
        assert cxl_read(fs, f"{d}/interleave_ways") == "1"
    assert cxl_read(fs, "decoder2.0/interleave_granularity") == "256"
    assert cxl_read(fs, "region0/mode") == "ram"
    assert s.machine.hdm_caps["0000:0d:00.0"].regs[0].bi            # committed with the BI coherence model
    assert set(_states(fs).values()) == {"committed"}


def test_bi_refusals_on_qemu_hdm_db():
    s = System.boot("qemu-hdm-db")
    fs = Sysfs(s)
    dec = _first_decoders(s)
    cxl_write(fs, f"{dec[1]}/mode", "ram")
    with pytest.raises(KernelError) as e:                          # 512M on a 256M device
        cxl_write(fs, f"{dec[1]}/dpa_size", "0x20000000")
    assert e.value.errno == errno.ENOSPC
    for serial in (3, 4):                                          # not HDM-DB
        with pytest.raises(KernelError) as e:
            cxl_write(fs, f"{dec[serial]}/bi", 1)
        assert e.value.errno == errno.ENXIO and "not HDM-DB" in e.value.reason
    # 2-way BI region over one HDM-DB device and one plain device: the plain one cannot join
    for serial in (1, 3):
        cxl_write(fs, f"{dec[serial]}/mode", "ram")
        cxl_write(fs, f"{dec[serial]}/dpa_size", "0x10000000")
    cxl_write(fs, f"{dec[1]}/dpa_size", "0")
    cxl_write(fs, f"{dec[1]}/bi", 1)
    cxl_write(fs, f"{dec[1]}/dpa_size", "0x10000000")
    r = _new_region(fs, "create_ram_bi_region")
    cxl_write(fs, f"{r}/target0", dec[1])
    with pytest.raises(KernelError) as e:
        cxl_write(fs, f"{r}/target1", dec[3])
    assert e.value.errno == errno.EINVAL and "non-BI decoder in a BI region" in e.value.reason
    # and a BI decoder cannot join a plain ram region
    cxl_write(fs, f"{r}/target0", "")
    plain = _new_region(fs, "create_ram_region")
    with pytest.raises(KernelError) as e:
        cxl_write(fs, f"{plain}/target0", dec[1])
    assert e.value.errno == errno.EINVAL and "BI decoder in a non-BI region" in e.value.reason


def test_two_way_bi_region_over_hdm_db_devices_commits():
    s = System.boot("qemu-hdm-db")
    fs = Sysfs(s)
    dec = _first_decoders(s)
    for serial in (1, 2):
        cxl_write(fs, f"{dec[serial]}/mode", "ram")
        cxl_write(fs, f"{dec[serial]}/bi", 1)
        cxl_write(fs, f"{dec[serial]}/dpa_size", "0x10000000")
    r = _new_region(fs, "create_ram_bi_region")
    cxl_write(fs, f"{r}/target0", dec[1])
    cxl_write(fs, f"{r}/target1", dec[2])
    cxl_write(fs, f"{r}/commit", 1)
    assert cxl_read(fs, f"{r}/commit") == "1"
    st = _states(fs)
    nr = {c: int(fs.read(f"kernel/debug/cxlsys/bi/{c}/nr_bi")) for c in st}
    # root port 0 and the switch route table carry both endpoints, each DSP and device one
    assert nr["0000:0c:00.0"] == 2 and nr["0000:0d:00.0"] == 2
    assert nr["0000:0e:00.0"] == nr["0000:0e:01.0"] == nr["0000:0f:00.0"] == nr["0000:10:00.0"] == 1
    assert st["0000:0c:01.0"] == "disabled" and st["0000:0e:02.0"] == "disabled"
    assert st["0000:0d:00.0"] == "committed" and st["0000:0e:00.0"] == "committed"
    ids = sorted(m.bi_id for m in memdevs(s) if m.bi_id is not None)
    assert ids == [0, 1]
    # endpoint removal releases the BI-ID and the path counts
    cxl_write(fs, f"{r}/commit", 0)
    m1 = memdev(s, 1)
    fs.write("bus/cxl/drivers/cxl_mem/unbind", f"{m1.name}\n".encode())
    assert m1.bi_id is None
    assert int(fs.read("kernel/debug/cxlsys/bi/0000:0c:00.0/nr_bi")) == 1
    assert fs.read("kernel/debug/cxlsys/bi/0000:0e:00.0/state") == b"disabled\n"


@pytest.mark.parametrize("component,fault,err", [("0000:0e:00.0", "timeout", errno.ETIMEDOUT),
                                                  ("0000:0d:00.0", "timeout", errno.ETIMEDOUT),
                                                  ("0000:0e:00.0", "error", errno.EIO)])
def test_injected_bi_commit_failure_rolls_back(component, fault, err):
    s = System.boot("qemu-hdm-db")
    fs = Sysfs(s)
    dec = _first_decoders(s)
    fs.write(f"kernel/debug/cxlsys/bi/{component}/inject", f"{fault}\n".encode())
    cxl_write(fs, f"{dec[1]}/mode", "ram")
    with pytest.raises(KernelError) as e:
        cxl_write(fs, f"{dec[1]}/bi", 1)
    assert e.value.errno == err
    assert set(_states(fs).values()) == {"disabled"}
    assert cxl_read(fs, f"{dec[1]}/bi") == "0"
    assert all(int(fs.read(f"kernel/debug/cxlsys/bi/{c}/nr_bi")) == 0 for c in _states(fs))
    # once the fault is cleared the same write succeeds
    fs.write(f"kernel/debug/cxlsys/bi/{component}/inject", b"none\n")
    cxl_write(fs, f"{dec[1]}/bi", 1)
    assert _states(fs)[component] == "committed"


def test_bi_absent_from_the_baseline_profile():
    fs = Sysfs(System.boot("cxl_test"))
    assert "bi" not in fs.listdir("bus/cxl/devices/decoder5.0")
    assert "create_ram_bi_region" not in fs.listdir("bus/cxl/devices/decoder0.0")
    fs2 = Sysfs(System.boot("qemu-hdm-db", kernel="6.12"))
    assert "create_ram_bi_region" not in fs2.listdir("bus/cxl/devices/decoder0.0")


@pytest.mark.mount
def test_flow_through_the_mount():
    script = "bash examples/lpc2025-hdm-db-flow.sh\n" + r'''
    cat /sys/bus/cxl/devices/region0/commit /sys/bus/cxl/devices/decoder2.0/bi
    cxl list -R -D > /tmp/bi-list.json
    jq -c '[length]' /tmp/bi-list.json
    cxl list -D -d root | jq -c '.[0] | [.volatile_capable, .accelmem_capable]'
    cxl list -R -i | jq -c '.[0] | [.region, .size, .interleave_ways, .decode_state]'
    '''
    out = cxlsys_run(script, topology="bi-direct", cwd=ROOT).stdout.split()
    assert out[0] == "1" and out[1] == "1"
    assert out[3] == "[true,true]"
    assert out[4] == '["region0",536870912,1,"commit"]'


@pytest.mark.mount
def test_qemu_hdm_db_refusals_through_the_mount():
    script = r'''
    err=$(mktemp)
    try() { if ( echo "$2" > "$1" ) 2>$err; then echo ok; else sed 's/.*: //' $err; fi; }
    d=/sys/bus/cxl/devices
    dec() { cxl list -Di -d endpoint -s $1 | jq -r 'sort_by(.decoder)|.[0].decoder' 2>/dev/null || \
            cxl list -Di -d endpoint | jq -r ".[0].decoder"; }
    for m in $(cxl list -M | jq -r 'sort_by(.serial)|.[].memdev'); do
        e=$(cxl list -Di -d endpoint -m $m | jq -r 'sort_by(.decoder)|.[0].decoder'); echo "$m $e" >> /tmp/map
        echo ram > $d/$e/mode
    done
    e1=$(sed -n 1p /tmp/map | cut -d" " -f2); e3=$(sed -n 3p /tmp/map | cut -d" " -f2)
    try $d/$e1/dpa_size 0x20000000
    try $d/$e3/bi 1
    echo inject > /dev/null
    echo timeout > /sys/kernel/debug/cxlsys/bi/0000:0e:00.0/inject
    try $d/$e1/bi 1
    cat /sys/kernel/debug/cxlsys/bi/*/state | sort -u
    journalctl -k | grep -c "rolled back"
    '''
    out = cxlsys_run(script, topology="qemu-hdm-db").stdout.strip().split("\n")
    assert out == ["No space left on device", "No such device or address", "Connection timed out", "disabled", "1"]
