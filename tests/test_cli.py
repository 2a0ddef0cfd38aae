"""The command line for machines and for people: --json, the kernel log kept and followed,
--explain, and a FUSE that cannot be used explained in one line (issue 13, items 3-5)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading

import pytest

from cxlsys.cli.main import main
from cxlsys.cli.mounts import fuse_unusable
from cxlsys.cli.output import keep_log, progress
from cxlsys.klog import KernelLog
from cxlsys.sysfs import Sysfs
from cxlsys.system import System
from cxlsys.testing import RAM_REGION_SETUP, cxlsys_run, provision_ram_region
from cxlsys.topology import FIXTURES
from cxlsys.treedump import dump_model
from fuse_mount.control import dispatch

PY = sys.executable
CREATE = "bus/cxl/devices/decoder0.0/create_ram_region"


def _json(capsys, argv) -> object:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


# -- --json ----------------------------------------------------------------------------------------

def test_tree_json_is_the_model(capsys):
    data = _json(capsys, ["tree", "--json"])
    assert data["topology"] == "cxl_test" and data["kernel"] == "6.12"
    (root,) = data["ports"]
    assert root["port"] == "root0" and root["host"] == "cxl_acpi.0"
    d00 = root["decoders"][0]
    assert d00["decoder"] == "decoder0.0" and d00["size"] == 1 << 30 and d00["targets"] == [0] and d00["ram"]
    (region,) = d00["regions"]
    assert region == {"region": "region0", "mode": "ram", "size": 512 << 20, "interleave_ways": 2,
                      "state": "commit", "bound": True, "targets": ["decoder5.0", "decoder12.0"]}

    def endpoints(p):
        return ([p] if p["kind"] == "endpoint" else []) + [e for c in p.get("ports", ()) for e in endpoints(c)]
    eps = endpoints(root)
    assert sorted(e["memdev"] for e in eps) == sorted(f"mem{i}" for i in range(11))
    mem0 = next(e for e in eps if e["memdev"] == "mem0")
    assert (mem0["host"], mem0["ram_size"], mem0["pmem_size"], mem0["serial"]) == ("cxl_mem.0", 1 << 30, 1 << 30, 0)


def test_tree_plain_when_piped_is_one_line_per_node(capsys):
    assert main(["tree", "-t", "qemu-hdm-db"]) == 0
    out = capsys.readouterr().out
    assert "\x1b[" not in out                                          # no colour codes
    assert any(line.endswith("serial 0x1, HDM-DB, 256B flit") for line in out.splitlines())   # not wrapped


def test_topologies_json_lists_every_preset(capsys):
    data = _json(capsys, ["topologies", "--json"])
    assert [d["name"] for d in data] == sorted(p.stem for p in FIXTURES.glob("*.toml"))
    by = {d["name"]: d for d in data}
    assert by["cxl_test"]["module"] == "cxl_test" and by["qemu-hdm-db"]["kernel"] == "6.12-bi"


def test_dump_json_agrees_with_the_text_dump(capsys):
    data = _json(capsys, ["dump", "--json", "--root", "bus/cxl/devices/mem0"])
    text = dump_model(Sysfs(System.boot("cxl_test")), [data[0]["path"]])
    assert [d["path"] for d in data] == [line.split("\t")[0] for line in text]
    serial = next(d for d in data if d["path"].endswith("/mem0/serial"))
    assert serial == {"path": serial["path"], "type": "file", "mode": "444", "value": "0x0\n"}
    drv = next(d for d in data if d["path"].endswith("/mem0/driver"))
    assert drv["type"] == "link" and drv["target"].endswith("/bus/cxl/drivers/cxl_mem")


# -- the kernel log: sinks, followers --------------------------------------------------------------

def test_log_sinks_get_every_record_in_order_and_a_failing_one_is_dropped():
    log = KernelLog()
    log.log("before")
    got: list = []
    log.add_sink(lambda r: got.append(r.text))                 # replays the ring first

    def broken(r):
        raise OSError(28, "No space left on device")
    log.add_sink(broken, replay=False)
    log.log("after", "err")
    assert got[:2] == ["before", "after"]
    assert broken not in log.sinks
    assert "kernel log sink 'broken' dropped: OSError" in got[2]        # said, not silent
    log.log("still")
    assert got[-1] == "still"


def test_wait_after_returns_what_arrives():
    log = KernelLog()
    log.log("old")
    got: list = []
    t = threading.Thread(target=lambda: got.extend(log.wait_after(1, timeout=30)[0]))
    t.start()
    log.log("new")
    t.join(30)
    assert [r.text for r in got] == ["new"]
    assert log.wait_after(2, timeout=0) == ([], 2)                      # nothing newer: no wait


def test_keep_log_writes_the_file_as_it_logs_and_explains_refusals(tmp_path, capfd):
    system = System.boot("cxl_test")
    f = tmp_path / "kernel.log"
    keep_log(system, str(f), explain=True)
    boot = f.read_text().splitlines()
    assert boot and boot[-1].endswith("cxl_test: topology cxl_test loaded interleave_arithmetic=0")
    with pytest.raises(OSError) as e:
        Sysfs(system).write(CREATE, b"1\n")
    assert e.value.errno == 22
    last = f.read_text().splitlines()[-1]
    assert "expected regionN, got '1'" in last and last.endswith(": EINVAL]")
    err = capfd.readouterr().err
    assert err == f"cxlsys: refused: {last.split('] ', 1)[1]}\n"        # the refusal, and only it


def test_dmesg_file_that_cannot_be_written_is_one_line(tmp_path):
    r = subprocess.run([PY, "-m", "cxlsys", "mount", "--dmesg", str(tmp_path / "no" / "log"), str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr == f"cxlsys: --dmesg {tmp_path / 'no' / 'log'}: No such file or directory\n"
    assert not os.path.ismount(tmp_path)


def test_progress_is_silent_when_not_a_terminal(capsys):
    with progress("x", 10) as bar:
        assert bar is None
    assert capsys.readouterr().err == ""


# -- FUSE that cannot be used ----------------------------------------------------------------------

def test_fuse_unusable_names_the_cause(tmp_path):
    assert "does not exist: load the module" in fuse_unusable(str(tmp_path / "fuse"))
    (tmp_path / "file").write_text("")
    assert "is not a character device" in fuse_unusable(str(tmp_path / "file"))
    for why in (fuse_unusable(str(tmp_path / "fuse")), fuse_unusable(str(tmp_path / "file"))):
        assert "\n" not in why and "System.boot()" in why        # and what works without it


def _as_nobody_with_fuse(mode: int, cmd: list) -> subprocess.CompletedProcess:
    """``cmd`` as user nobody, in a private mount namespace where /dev/fuse is a node of ``mode``
    (the host's own /dev/fuse is never touched)."""
    script = (f'set -e; mount --make-rprivate /; d=$(mktemp -d); mount -t tmpfs -o mode=755 tmpfs "$d"; '
              f'mknod -m {mode:o} "$d/fuse" c 10 229; mount --bind "$d/fuse" /dev/fuse; cd /; '
              f'exec setpriv --reuid=65534 --regid=65534 --clear-groups "$@"')
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *cmd], capture_output=True, text=True,
                          timeout=120)


needs_root_tools = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv") or not shutil.which("unshare"),
    reason="needs root, setpriv and unshare (to become a user with a given /dev/fuse)")


@pytest.mark.mount
@needs_root_tools
@pytest.mark.parametrize("command", [["run", "--", "true"], ["mount", "{tmp}"]])
def test_no_root_and_a_closed_dev_fuse_is_one_line_with_the_fix(tmp_path, command):
    r = _as_nobody_with_fuse(0o600, [PY, "-m", "cxlsys"] + [c.format(tmp=tmp_path) for c in command])
    assert r.returncode == 2, r
    assert r.stderr.count("\n") == 1, r.stderr
    assert "/dev/fuse is crw------- root:root: you (uid 65534) may not open it" in r.stderr
    assert "udev rule" in r.stderr and "run as root" in r.stderr and "System.boot()" in r.stderr


@pytest.mark.mount
@needs_root_tools
def test_no_root_with_an_open_dev_fuse_runs_the_real_tools():
    script = ("cat /sys/bus/cxl/devices/mem0/serial; cxl list -M | jq length; "
              "echo region9 > /sys/bus/cxl/devices/decoder0.0/create_ram_region 2>/dev/null || echo refused")
    r = _as_nobody_with_fuse(0o666, [PY, "-m", "cxlsys", "run", "--", "sh", "-c", script])
    assert r.returncode == 0, r
    assert r.stdout.split() == ["0x0", "11", "refused"]     # a root-only store (0200) is refused to a user


# -- through the mount: --dmesg, --explain, dmesg --json / --follow --------------------------------

@pytest.mark.mount
def test_explain_and_the_log_file_outlive_the_run(tmp_path):
    log = tmp_path / "kernel.log"
    r = cxlsys_run(f"echo 1 > /sys/{CREATE} || true; echo after", options=["--explain", "--dmesg", str(log)])
    assert r.returncode == 0 and r.stdout == "after\n"
    lines = r.stderr.splitlines()
    why = "decoder0.0: expected regionN, got '1' [write '1' to /sys/devices/platform/cxl_acpi.0/root0/decoder0.0/" \
          "create_ram_region: EINVAL]"
    # in order; the script's line 1 is cxlsys_run's set -e
    assert lines == [f"cxlsys: refused: {why}", "bash: line 2: echo: write error: Invalid argument"]
    kept = log.read_text().splitlines()
    assert "cxl_test: topology cxl_test loaded" in kept[-2] and kept[-1].endswith("] " + why)


@pytest.mark.mount
def test_the_log_file_survives_a_killed_daemon(tmp_path):
    log = tmp_path / "kernel.log"
    r = cxlsys_run(f"echo 2 > /sys/{CREATE} || true; kill -9 $CXLSYS_DAEMON_PID; "
                   "cat /sys/bus/cxl/devices/mem0/serial 2>/dev/null || echo gone", options=["--dmesg", str(log)])
    assert r.stdout == "gone\n"
    assert log.read_text().splitlines()[-1].endswith("got '2' [write '2' to /sys/devices/platform/cxl_acpi.0/root0/"
                                                     "decoder0.0/create_ram_region: EINVAL]")


@pytest.mark.mount
def test_dmesg_json_and_follow_inside_a_run():
    script = f'''
    {PY} -m cxlsys dmesg --json | jq -r '.dmesg[-1].msg'
    exec 3< <({PY} -m cxlsys dmesg --follow --json)
    read -r first <&3                      # the backlog came: the follower's first answer is in
    echo "$first" | jq -r .seq
    echo 3 > /sys/{CREATE} || true         # logged after that answer: a later one must bring it
    timeout 60 grep -m1 "got '3'" <&3 | jq -r .pri
    '''
    r = cxlsys_run(script, check=False)
    assert r.returncode == 0, r
    assert r.stdout.splitlines() == ["cxl_test: topology cxl_test loaded interleave_arithmetic=0", "1", "3"]


def test_dmesg_outside_a_run_points_at_the_log_file(capsys, monkeypatch):
    monkeypatch.delenv("CXLSYS_CONTROL", raising=False)
    assert main(["dmesg"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--dmesg FILE" in err


@pytest.mark.mount
def test_mount_keeps_its_log(tmp_path):
    mp, log = tmp_path / "mp", tmp_path / "kernel.log"
    mp.mkdir()
    up = subprocess.run([PY, "-m", "cxlsys", "mount", "--dmesg", str(log), str(mp)],
                        capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    try:
        with pytest.raises(OSError) as e:
            with open(mp / CREATE, "w") as f:
                f.write("4\n")
        assert e.value.errno == 22
    finally:
        subprocess.run([PY, "-m", "cxlsys", "umount", str(mp)], check=True, timeout=60)
    assert log.read_text().splitlines()[-1].endswith("got '4' [write '4' to /sys/devices/platform/cxl_acpi.0/"
                                                     "root0/decoder0.0/create_ram_region: EINVAL]")


def test_mount_explains_only_in_the_foreground(tmp_path, capsys):
    assert main(["mount", "--explain", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("cxlsys mount: --explain needs --foreground")


LPC_SMALL = ["-M", "q35,cxl=on", "-m", "4G", "-object", "memory-backend-ram,id=m0,size=256M",
             "-device", "pxb-cxl,bus_nr=12,bus=pcie.0,id=c1", "-device", "cxl-rp,port=0,bus=c1,id=rp0,chassis=0,slot=0",
             "-device", "cxl-type3,bus=rp0,volatile-memdev=m0,id=d0", "-M", "cxl-fmw.0.targets.0=c1,cxl-fmw.0.size=4G"]


@pytest.mark.parametrize("argv", [["generate"], ["export-qemu"], ["import-qemu", "--", *LPC_SMALL]],
                         ids=["generate", "export-qemu", "import-qemu"])
def test_an_output_that_cannot_be_written_is_one_line(tmp_path, capsys, argv):
    out = tmp_path / "no" / "such.toml"
    assert main(argv[:1] + ["-o", str(out)] + argv[1:]) == 2
    assert capsys.readouterr().err == f"cxlsys {argv[0]}: {out}: No such file or directory\n"


def _fake_daemon(monkeypatch, tmp_path, answer):
    """``cxlsys dmesg`` pointed at a control socket whose replies are ``answer(request)``."""
    ctl = tmp_path / "control.sock"
    ctl.write_text("")
    monkeypatch.setenv("CXLSYS_CONTROL", str(ctl))
    monkeypatch.setattr("cxlsys.cli.main.request", lambda path, req, timeout=60.0: answer(req))


def test_dmesg_json_from_a_daemon_that_refuses_is_one_line(monkeypatch, tmp_path, capsys):
    _fake_daemon(monkeypatch, tmp_path, lambda req: {"rc": 2, "out": "", "err": "cxlsys: unknown control command\n"})
    assert main(["dmesg", "--json"]) == 1
    cap = capsys.readouterr()
    assert cap.err == "cxlsys: unknown control command\n" and cap.out == ""


def test_dmesg_follow_asks_from_the_sequence_it_was_given_and_ends_with_the_daemon(monkeypatch, tmp_path, capsys):
    asked = []

    def answer(req):
        asked.append(req.get("after"))
        if len(asked) == 1:
            return {"rc": 0, "records": [{"pri": 6, "time": 1.5, "msg": "one", "seq": 1}], "seq": 3}
        if len(asked) == 2:      # a wait that timed out empty: the newest seq comes with it
            return {"rc": 0, "records": [], "seq": 3}
        raise ConnectionRefusedError(111, "Connection refused")        # the run ended
    _fake_daemon(monkeypatch, tmp_path, answer)
    assert main(["dmesg", "--follow"]) == 0
    assert asked == [0, 3, 3]
    assert capsys.readouterr().out == "[    1.500000] one\n"


def test_dmesg_follow_ends_quietly_on_ctrl_c(monkeypatch, tmp_path, capsys):
    def answer(req):
        if "wait" in req:
            raise KeyboardInterrupt
        return {"rc": 0, "records": [], "seq": 0}
    _fake_daemon(monkeypatch, tmp_path, answer)
    assert main(["dmesg", "-w"]) == 130
    assert capsys.readouterr().err == ""


def test_dmesg_follow_says_when_the_daemon_stops_answering(monkeypatch, tmp_path, capsys):
    def answer(req):
        if "wait" in req:
            raise TimeoutError("timed out")
        return {"rc": 0, "records": [], "seq": 0}
    _fake_daemon(monkeypatch, tmp_path, answer)
    assert main(["dmesg", "-w"]) == 1
    assert "stopped answering" in capsys.readouterr().err


@pytest.mark.parametrize("content, msg", [(b"-M q35 " * 200_000, "over 1 MiB: not a QEMU command line"),
                                          (b"-M q35,cxl=on \xff\xfe", "not UTF-8 text (byte 14)")])
def test_import_qemu_file_that_is_no_command_line(tmp_path, capsys, content, msg):
    f = tmp_path / "q.sh"
    f.write_bytes(content)
    assert main(["import-qemu", str(f)]) == 2
    assert capsys.readouterr().err == f"cxlsys import-qemu: {f}: {msg}\n"


def test_dmesg_file_on_a_full_disk_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        keep_log(System.boot("bi-direct"), "/dev/full")      # the boot's lines do not fit
    assert e.value.code == 2
    assert capsys.readouterr().err == "cxlsys: --dmesg /dev/full: No space left on device\n"


def test_memory_control_command_counts_blocks():
    system = System.boot("cxl_test")
    fs = Sysfs(system)

    def counts():
        rep = dispatch(system, {"cmd": "memory"}, {"changed": lambda: None})
        assert rep["rc"] == 0
        return rep["present"], rep["online"]

    def blocks():
        return {b for b in fs.listdir("devices/system/memory") if b.startswith("memory")}
    before = blocks()
    assert counts() == (len(before), 0)                  # the auto region's blocks, offline
    provision_ram_region(fs)
    new = sorted(blocks() - before)
    fs.write(f"devices/system/memory/{new[0]}/state", b"online_movable")
    assert counts() == (len(before) + len(new), 1) and len(new) > 1


@pytest.mark.mount
@pytest.mark.skipif(not shutil.which("script"), reason="needs script(1) for a terminal")
def test_run_progress_shows_the_blocks_coming_online(tmp_path):
    sh = tmp_path / "online.sh"
    sh.write_text(RAM_REGION_SETUP + "echo 1 > $d/$r/commit\ncxl enable-region $r >/dev/null\n"
                  "daxctl online-memory dax${r#region}.0 >/dev/null 2>&1\n")
    cmd = f"{PY} -m cxlsys run --progress -- bash -e {sh}"
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, timeout=300)
    assert r.returncode == 0, r
    shown = r.stdout.decode(errors="replace")
    assert "memory blocks online" in shown                      # the bar, on the terminal
    plain = subprocess.run([PY, "-m", "cxlsys", "run", "--progress", "--", "bash", "-e", str(sh)],
                           capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0 and "memory blocks" not in plain.stderr   # piped: nothing
