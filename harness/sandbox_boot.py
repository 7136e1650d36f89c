"""The child side of harness.sandbox. Never imported by the harness: run as a script,
`python -I -S -B sandbox_boot.py CONFIG_JSON`, in a fresh process started by harness.sandbox.run_python.

Three processes, all trusted code until the last exec:

1. boot (this script): unshares what the kernel allows (user, mount, network and PID namespaces), makes the
   whole filesystem read-only, mounts a small tmpfs as the working directory, then forks
2. the supervisor: PID 1 of the new PID namespace. It mounts a private /proc, forks the runner, reaps every
   process and exits with the runner's status; when it exits, the kernel kills the rest of the namespace
3. the runner: sets the resource limits, drops to an unprivileged uid (when started as root), forbids new
   privileges, writes the program into the tmpfs and execs a fresh interpreter running RUNNER, which installs
   the Python-level guard and only then executes the program.

Each step that the platform refuses is skipped and recorded; the parent reads the record from the status pipe.
Only the standard library is used, and nothing from this repository.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import sys
from typing import Any

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18
SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE = 442, -100, 0x8000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID = 0x1, 0x2
PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP, PR_SET_SECUREBITS = 38, 24, 28
SECURE_ALL_LOCKED = 0x2F  # NOROOT, NO_SETUID_FIXUP, their locks, and KEEP_CAPS locked off
SETUP_FAILED = 98

# Executed by the sandboxed interpreter (argv: status fd, program path, "1" to install the guard).
RUNNER = r"""
import builtins, os, sys, traceback
_fd, _path, _guard = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
_write, _exit = os.write, os._exit

def _finish(word, detail, code):
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    try:
        _write(_fd, ("status " + word + " " + " ".join(str(detail).split())[:300] + "\n").encode())
    except BaseException:
        pass
    _exit(code)

try:
    with open(_path, encoding="utf-8") as fh:
        _code = compile(fh.read(), "program.py", "exec")
except (SyntaxError, ValueError, UnicodeDecodeError) as exc:
    traceback.print_exc()
    _finish("syntax", f"{type(exc).__name__}: {exc}", 1)

if _guard:
    _work = os.getcwd() + os.sep
    _blocked = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                "os.forkpty", "os.kill", "os.killpg", "pty.spawn", "webbrowser.open", "ctypes.dlopen"}

    def _audit(event, args):
        if event.startswith("socket.") or event in _blocked:
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open" and isinstance(args[0], (str, bytes)) and (args[2] or 0) & 0o3103:
            path = os.path.abspath(os.fsdecode(args[0]))
            if not (path + os.sep).startswith(_work) and path != "/dev/null":
                raise PermissionError(f"sandbox: writing {path} is not allowed")

    sys.addaudithook(_audit)
    # After human-eval's reliability_guard (MIT): not a security boundary, a second layer over the kernel's.
    os.environ["OMP_NUM_THREADS"] = "1"
    builtins.exit = builtins.quit = None
    for _name in ("kill", "killpg", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid",
                  "fork", "forkpty", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown",
                  "chmod", "chown", "chroot", "lchown", "chdir"):
        setattr(os, _name, None)
    import shutil, subprocess
    shutil.rmtree = shutil.move = shutil.chown = None
    subprocess.Popen = None
    for _mod in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[_mod] = None

_globals = {"__name__": "__sandbox__", "__builtins__": builtins}
try:
    exec(_code, _globals)
except MemoryError:
    _finish("memory", "MemoryError", 1)
except SystemExit as exc:
    _finish("exit", f"SystemExit({exc.code!r}) before the program finished", 1)
except BaseException as exc:
    try:
        traceback.print_exc()
    except BaseException:
        pass
    _finish("exception", f"{type(exc).__name__}: {exc}", 1)
_finish("done", "", 0)
"""

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = [None if s is None else s.encode() for s in (src, target, fstype, data)]
    _check(_libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]), f"mount {target}")


def _readonly_tree(path: str) -> None:
    """mount_setattr(2) with AT_RECURSIVE (Linux 5.12): every mount under `path`, read-only and nosuid."""
    attr = (ctypes.c_uint64 * 4)(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)
    ret = _libc.syscall(
        ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(AT_FDCWD), path.encode(),
        ctypes.c_uint(AT_RECURSIVE), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)),
    )  # fmt: skip
    _check(ret, "mount_setattr")


def _prctl(option: int, arg: int) -> int:
    zero = ctypes.c_ulong(0)
    return int(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), zero, zero, zero))


def _write_file(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def _emit(fd: int, word: str, detail: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, f"{word} {detail}\n".encode())


def setup(cfg: dict[str, Any]) -> dict[str, Any]:
    """Namespaces and mounts in the boot process; returns what was obtained."""
    root = os.geteuid() == 0
    uid, gid = os.getuid(), os.getgid()
    iso: dict[str, Any] = {"user": "same-user", "net": "none", "pid": "none", "fs": "none", "proc": "host"}
    iso["errors"] = []
    user = 0 if root else CLONE_NEWUSER
    ns: set[str] = set()
    attempts = (
        (user | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID, {"mnt", "net", "pid"}),
        (user | CLONE_NEWNET, {"net"}),
    )
    for flags, names in attempts if cfg["namespaces"] else ():
        try:
            _unshare(flags)
            ns = names | ({"user"} if user else set())
            break
        except OSError as exc:
            iso["errors"].append(f"unshare({sorted(names)}): {exc.strerror}")
    if "user" in ns:
        _write_file("/proc/self/setgroups", "deny")
        _write_file("/proc/self/uid_map", f"{uid} {uid} 1")
        _write_file("/proc/self/gid_map", f"{gid} {gid} 1")
        iso["user"] = "userns"
    if "net" in ns:
        iso["net"] = "netns"
    if "pid" in ns:
        iso["pid"] = "pidns"
    drop = cfg["uid"] if root else None
    interp, env_extra = cfg["interp"], {}
    if "mnt" in ns:
        relocated = _mounts(cfg, iso, drop)
        if relocated:
            interp = os.path.join(relocated, os.path.relpath(interp, cfg["prefix"]))
            env_extra["LD_LIBRARY_PATH"] = os.path.join(relocated, "lib")
    if drop is not None and cfg["relocate"] and interp == cfg["interp"]:
        drop = None  # the sandbox uid could not even start the interpreter: stay root, without capabilities
        iso["errors"].append("interpreter unreachable for an unprivileged uid")
    if drop is not None and "tmpfs" not in iso["fs"]:
        os.chown(cfg["work"], drop, drop)
    if drop is not None:
        iso["user"] = f"uid {drop}"
    elif root:
        iso["user"] = "root without capabilities"
    cfg.update(drop=drop, interp_run=interp, env_extra=env_extra, root_nocaps=root and drop is None)
    return iso


def _mounts(cfg: dict[str, Any], iso: dict[str, Any], drop: int | None) -> str | None:
    """Mounts in the new mount namespace; returns where the interpreter was bind-mounted, if it was."""
    try:  # first, or every later mount would propagate to the host's namespace
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
        iso["mounts"] = "private"
    except OSError as exc:
        iso["errors"].append(str(exc))
        return None
    relocated = None
    if drop is not None and cfg["relocate"]:
        try:  # the interpreter lies where the sandbox uid cannot reach (root's home): show it a bind mount
            _mount(cfg["prefix"], cfg["relocate"], None, MS_BIND | MS_REC)
            relocated = cfg["relocate"]
        except OSError as exc:
            iso["errors"].append(str(exc))
    try:
        _readonly_tree("/")
        iso["fs"] = "read-only"
    except OSError as exc:
        iso["errors"].append(str(exc))
    try:
        opts = f"size={cfg['tmpfs_mb']}m,nr_inodes=4096,mode=0700"
        owner = f",uid={drop},gid={drop}" if drop is not None else ""
        _mount("tmpfs", cfg["work"], "tmpfs", MS_NOSUID | MS_NODEV, opts + owner)
        iso["fs"] = "read-only+tmpfs" if iso["fs"] == "read-only" else "tmpfs"
    except OSError as exc:
        iso["errors"].append(str(exc))
    return relocated


def supervise(cfg: dict[str, Any], iso: dict[str, Any]) -> None:
    fd = cfg["status_fd"]
    if iso["pid"] == "pidns" and iso.get("mounts") == "private":
        try:  # a /proc of this namespace: the program sees only its own processes, not the harness's
            _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
            iso["proc"] = "private"
        except OSError as exc:
            iso["proc"] = "host"
            iso["errors"].append(str(exc))
    nproc = cfg["nproc"]
    if cfg["drop"] is not None:
        iso["nproc"] = "per-sandbox uid"
    elif iso["user"] == "userns":
        iso["nproc"] = "per-sandbox userns"
        nproc += 2  # the boot and the supervisor count in the namespace too
    elif os.geteuid() == 0:
        iso["nproc"] = "not enforced (root)"
    else:
        iso["nproc"] = "per-user (shared)"
        nproc += _count_processes(os.getuid())
    _emit(fd, "isolation", json.dumps(iso, sort_keys=True))
    runner = os.fork()
    if runner == 0:
        try:
            run(cfg, nproc)
        except BaseException as exc:
            _emit(fd, "status", f"setup sandbox setup failed: {exc}")
        os._exit(SETUP_FAILED)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(SETUP_FAILED)
        if pid == runner:
            os._exit(_exit_code(status))


def run(cfg: dict[str, Any], nproc: int) -> None:
    cpu, mem = int(cfg["cpu_s"]), int(cfg["memory_mb"]) << 20
    file_bytes = int(cfg["file_mb"]) << 20
    for res, value in (
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_AS, (mem, mem)),
        (resource.RLIMIT_NPROC, (nproc, nproc)),
        (resource.RLIMIT_FSIZE, (file_bytes, file_bytes)),
        (resource.RLIMIT_NOFILE, (256, 256)),
        (resource.RLIMIT_CORE, (0, 0)),
    ):
        resource.setrlimit(res, value)
    os.chdir(cfg["work"])  # first: the directories above it need not be open to the sandbox uid
    drop = cfg["drop"]
    if drop is not None:
        os.setgroups([])
        os.setresgid(drop, drop, drop)
        os.setresuid(drop, drop, drop)
    if cfg["root_nocaps"]:
        _drop_capabilities()
    _check(_prctl(PR_SET_NO_NEW_PRIVS, 1), "prctl(NO_NEW_PRIVS)")
    fd = os.open("program.py", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(cfg["source"])
    env = {**cfg["env"], **cfg["env_extra"]}
    guard = "1" if cfg["guard"] else "0"
    # The run's directory ends the command line: the harness finds strays of this run by it.
    argv = ["-I", "-S", "-B", "-u", "-c", RUNNER, str(cfg["status_fd"]), "program.py", guard, cfg["work"]]
    os.execve(cfg["interp_run"], [cfg["interp_run"], *argv], env)


def _drop_capabilities() -> None:
    """Root that could not become another uid: no capability survives the exec (securebits + bounding set)."""
    _check(_prctl(PR_SET_SECUREBITS, SECURE_ALL_LOCKED), "prctl(SECUREBITS)")
    for cap in range(64):
        if _prctl(PR_CAPBSET_DROP, cap) != 0:
            break  # past the last capability this kernel knows


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else SETUP_FAILED


def _count_processes(uid: int) -> int:
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                count += 1
        except OSError:
            pass
    return count


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as fh:
        cfg = json.load(fh)
    try:
        iso = setup(cfg)
        child = os.fork()
    except BaseException as exc:
        _emit(cfg["status_fd"], "status", f"setup sandbox setup failed: {exc}")
        os._exit(SETUP_FAILED)
    if child == 0:
        supervise(cfg, iso)
    os._exit(_exit_code(os.waitpid(child, 0)[1]))


if __name__ == "__main__":
    main()
