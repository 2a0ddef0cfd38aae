"""The ioctl interposer (cxlsys/cli/interpose.py) on its own: a child under the seccomp filter,
supervised in this process, with a fake model: fstat of a node file reads as the char device,
ioctls with the CXL/ND type bytes reach the handler (which reads and writes the child's memory),
everything else is untouched.  The end-to-end path (real tools, the daemon) is in
tests/test_device_tools.py."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from cxlsys.cli import interpose

pytestmark = pytest.mark.skipif(interpose._ARCH.get(os.uname().machine) is None, reason="no seccomp table")

CHILD = textwrap.dedent("""
    import ctypes, errno, fcntl, os, stat, struct, sys
    node, other = sys.argv[1], sys.argv[2]
    out = []
    fd = os.open(node, os.O_RDWR)
    st = os.fstat(fd)
    mode = oct(stat.S_IMODE(st.st_mode))
    out.append(f"fstat {stat.S_ISCHR(st.st_mode)} {os.major(st.st_rdev)}:{os.minor(st.st_rdev)} {mode}")
    st = os.stat(node)                      # by path (libcxl takes the devt from it)
    out.append(f"stat {stat.S_ISCHR(st.st_mode)} {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
    os.chdir(os.path.dirname(node))
    st = os.stat(os.path.basename(node))    # relative to the cwd
    out.append(f"relstat {stat.S_ISCHR(st.st_mode)}")
    out.append(f"lstat {stat.S_ISREG(os.lstat(node).st_mode)}")   # lstat: not interposed
    buf = bytearray(struct.pack("<IIQ", 7, 0, 0))
    req = (3 << 30) | (16 << 16) | (0xCE << 8) | 1
    r = fcntl.ioctl(fd, req, buf, True)
    out.append(f"ioctl {r} {struct.unpack('<IIQ', bytes(buf))}")
    try:
        fcntl.ioctl(fd, (3 << 30) | (16 << 16) | (0xCE << 8) | 9, buf, True)
    except OSError as e:
        out.append(f"ioctl-err {errno.errorcode[e.errno]}")
    ofd = os.open(other, os.O_RDWR)
    out.append(f"other {stat.S_ISREG(os.fstat(ofd).st_mode)}")
    try:
        fcntl.ioctl(ofd, req, buf, True)
    except OSError as e:
        out.append(f"other-ioctl {errno.errorcode[e.errno]}")
    libc = ctypes.CDLL(None, use_errno=True)
    r = libc.syscall(16 if os.uname().machine == "x86_64" else 29, fd, req, ctypes.c_char_p(bytes(16)))
    out.append(f"raw {r}")
    print("\\n".join(out))
""")


def run_supervised(tmp_path, calls):
    root = tmp_path / "dev"
    (root / "cxl").mkdir(parents=True)
    node = root / "cxl" / "mem0"
    node.write_bytes(b"")
    os.chmod(node, 0o600)
    other = tmp_path / "plain"
    other.write_bytes(b"")

    def devt(name):
        return (245, 0) if name == "cxl/mem0" else None

    def ioctl(dev, req, arg, mem, f_flags=os.O_RDWR):
        calls.append((dev, req))
        if req & 0xFF != 1:
            return 0, errno.ENOTTY
        n, = __import__("struct").unpack("<I", mem.read(arg, 4))
        mem.write(arg + 4, (n * 3).to_bytes(4, "little"))
        return 42, 0

    a, b = socket.socketpair()

    def pre():
        a.close()
        fd = interpose.install_filter(no_new_privs=True)
        socket.send_fds(b, [b"ok"], [fd])
        os.close(fd)
        b.close()

    p = subprocess.Popen([sys.executable, "-c", CHILD, str(node), str(other)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, preexec_fn=pre, pass_fds=(b.fileno(),))
    b.close()
    _, fds, _, _ = socket.recv_fds(a, 16, 1)
    sup = interpose.Supervisor(fds[0], [(str(root), str(root))], ioctl, devt)
    sup.start()
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err.decode()
    return out.decode().split("\n")


def test_interposed_child(tmp_path):
    calls: list = []
    lines = run_supervised(tmp_path, calls)
    assert lines[0] == "fstat True 245:0 0o600"
    assert lines[1] == "stat True 245:0"
    assert lines[2] == "relstat True"
    assert lines[3] == "lstat True"
    assert lines[4] == "ioctl 42 (7, 21, 0)"            # the handler read n=7 and wrote 21 after it
    assert lines[5] == "ioctl-err ENOTTY"
    assert lines[6] == "other True"                       # a plain file elsewhere keeps its own fstat
    assert lines[7] == "other-ioctl ENOTTY"               # and its CXL-typed ioctl reaches the real kernel
    assert lines[8] == "raw 42"                           # a raw syscall(2) is interposed as well
    assert [d for d, _ in calls] == ["cxl/mem0"] * 3


OPENER = textwrap.dedent("""
    import os, stat, sys
    fd = os.open("/dev/cxl/mem0", os.O_RDWR | os.O_CLOEXEC)    # no such file here: the supervisor opens it
    st = os.fstat(fd)
    print(os.readlink(f"/proc/self/fd/{fd}") == sys.argv[1], stat.S_ISCHR(st.st_mode))
    try:
        os.open("/dev/cxl/mem9", os.O_RDWR)                    # not a model node: the kernel's own answer
    except FileNotFoundError:
        print("ENOENT")
""")


def test_trap_open_installs_the_node(tmp_path):
    """With ``trap_open`` (the umockdev path) an open of ``/dev/<node>`` is done by the supervisor
    and the fd installed in the caller (SECCOMP_IOCTL_NOTIF_ADDFD); other opens are untouched."""
    nodes = tmp_path / "nodes"
    (nodes / "cxl").mkdir(parents=True)
    (nodes / "cxl" / "mem0").write_bytes(b"")
    a, b = socket.socketpair()

    def pre():
        a.close()
        fd = interpose.install_filter(no_new_privs=True, trap_open=True)
        socket.send_fds(b, [b"ok"], [fd])
        os.close(fd)
        b.close()

    p = subprocess.Popen([sys.executable, "-c", OPENER, str(nodes / "cxl" / "mem0")], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, preexec_fn=pre, pass_fds=(b.fileno(),))
    b.close()
    _, fds, _, _ = socket.recv_fds(a, 16, 1)
    interpose.Supervisor(fds[0], [("/dev", str(nodes))], lambda *x: (0, errno.ENOTTY),
                         lambda n: (245, 0) if n == "cxl/mem0" else None, trap_open=True).start()
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err.decode()
    assert out.decode().split("\n")[:2] == ["True True", "ENOENT"]


def test_filter_program_shape():
    prog = interpose.build_filter()
    assert prog[-1] == (interpose.BPF_RET_K, 0, 0, interpose.SECCOMP_RET_USER_NOTIF)
    assert prog[-2] == (interpose.BPF_RET_K, 0, 0, interpose.SECCOMP_RET_ALLOW)
    for i, (code, jt, jf, _) in enumerate(prog):     # every jump lands inside the program
        if code in (interpose.BPF_JEQ_K, interpose.BPF_JSET_K):
            assert i + 1 + max(jt, jf) < len(prog)
