"""A real converge of ansible/site.yml into a Debian 12 root, through the chroot connection.

Owns the scaffolding only (the roles do the work):
- the cached base root and wheelhouse of each release (tests.provisioning.roots);
- a tar of the working tree (`git ls-files`), deployed with gateway_source=archive;
- a stub Ollama release (bin/ollama, lib/ollama/) with its sha256sum.txt, served over HTTP on the
  host's loopback (the chroot shares the network), so the role really fetches sha256sum.txt,
  downloads the archive and checks it, as against github.com;
- a fresh copy of the base per run, /proc mounted, a policy-rc.d that exits 101, and teardown.

Needs root, debootstrap, chroot, zstd and the Debian mirror. Failures raise ConvergeError with
the command's output. Run by hand: python -m tests.provisioning.converge [--keep]; build the caches
only: python -m tests.provisioning.converge --prepare bookworm jammy noble
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.provisioning.roots import (ANSIBLE_DIR, CACHE, CHROOT, FIXTURES, REPO, SUITE_PYTHON, VENV_BIN, ConvergeError,
                                      cache_lock, ensure_base, ensure_wheelhouse, missing_prerequisites, run)


def source_archive(dest: Path, changes: dict[str, bytes] | None = None) -> Path:
    """A tar of the working tree's tracked and untracked-but-not-ignored files.

    `changes` replaces or adds files (name -> content): a new release for the upgrade test.
    """
    changes = changes or {}
    names = run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=REPO).stdout.split("\0")
    with tarfile.open(dest, "w") as tar:
        for name in sorted(n for n in names if n and (REPO / n).is_file() and n not in changes):
            tar.add(REPO / name, arcname=name, recursive=False)
        for name, data in sorted(changes.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return dest


def stub_ollama_release(folder: Path, version: str) -> None:
    """folder/v<version>/: the amd64 archive and a sha256sum.txt shaped like Ollama's (./<file> lines)."""
    release = folder / f"v{version}"
    release.mkdir(parents=True, exist_ok=True)
    amd64 = stub_ollama_archive(release / "ollama-linux-amd64.tar.zst", version)
    other = hashlib.sha256(b"not served").hexdigest()  # the arm64 and ROCm lines of a real sha256sum.txt
    (release / "sha256sum.txt").write_text(f"{amd64}  ./ollama-linux-amd64.tar.zst\n{other}  ./ollama-linux-arm64.tar.zst\n"
                                           f"{other}  ./ollama-linux-amd64-rocm.tar.zst\n")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def serve_folder(folder: Path) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stub_ollama_archive(dest: Path, version: str = "") -> str:
    """A .tar.zst shaped like Ollama's release (bin/ollama, lib/ollama/); returns its sha256."""
    script = f"#!/bin/sh\necho 'ollama {version} stub from the converge test' >&2\nexit 0\n".encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data, mode in (("bin/ollama", script, 0o755), ("lib/ollama/README", b"stub\n", 0o644)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    dest.write_bytes(subprocess.run(["zstd", "-q", "-c"], input=raw.getvalue(), capture_output=True, check=True).stdout)
    return hashlib.sha256(dest.read_bytes()).hexdigest()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tcp_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def wait_for(ready, timeout: float, what: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            raise ConvergeError(f"{what} (exit {process.poll()}); {log}:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.5)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class Recap:
    ok: int
    changed: int
    failed: int
    unreachable: int


@dataclass
class Converge:
    root: Path
    workdir: Path
    suite: str = "bookworm"
    mounts: list[Path] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None
    applies: list[tuple[Recap, str, float]] = field(default_factory=list)
    releases: dict[str, str] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)  # step name -> index in applies
    facts: dict[str, object] = field(default_factory=dict)  # what the live checks saw

    @classmethod
    def create(cls, name: str = "run", suite: str = "bookworm") -> Converge:
        with cache_lock(f"base-{suite}"):
            base = ensure_base(suite)
        with cache_lock(f"wheels-{SUITE_PYTHON[suite]}"):
            wheels = ensure_wheelhouse(SUITE_PYTHON[suite])
        with cache_lock():
            cls.remove_stale_runs()
        workdir = CACHE / f"{name}-{os.getpid()}"
        cls.cleanup(workdir)
        workdir.mkdir(parents=True)
        root = workdir / "root"
        run(["cp", "-a", "--reflink=auto", str(base), str(root)])
        self = cls(root=root, workdir=workdir, suite=suite)
        self._prepare(wheels)
        return self

    def _prepare(self, wheelhouse: Path) -> None:
        policy = self.root / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\n# converge test: never start services\nexit 101\n")
        policy.chmod(0o755)
        shutil.copy("/etc/resolv.conf", self.root / "etc/resolv.conf")
        self._mount(["-t", "proc", "proc"], self.root / "proc")
        wheels = self.root / "srv/wheelhouse"
        wheels.mkdir(parents=True, exist_ok=True)
        self._mount(["--bind", str(wheelhouse)], wheels)
        run(["mount", "-o", "remount,bind,ro", str(wheels)])

    def _mount(self, args: list[str], target: Path) -> None:
        run(["mount", *args, str(target)])
        self.mounts.append(target)

    def ollama_release(self, version: str) -> dict[str, str]:
        """Serve a stub Ollama release; the variables that point the role at it."""
        stub_ollama_release(self.workdir / "ollama-releases", version)
        if self.server is None:
            self.server = serve_folder(self.workdir / "ollama-releases")
        port = self.server.server_address[1]
        return {"ollama_version": version, "ollama_release_url": f"http://127.0.0.1:{port}/v{version}"}

    def extra_vars(self) -> dict[str, str]:
        archive = source_archive(self.workdir / "ai-gateway-src.tar")
        return {"gateway_source_archive": str(archive), **self.ollama_release("0.32.7")}

    def release_archive(self, name: str, changes: dict[str, bytes]) -> str:
        """A source archive for another release (the upgrade and rollback tests)."""
        return str(source_archive(self.workdir / f"ai-gateway-src-{name}.tar", changes))

    def apply(self, extra: dict[str, str], *flags: str, expect_failure: bool = False, step: str = "",
              playbook: str = "site.yml") -> Recap:
        inventory = self.workdir / "inventory.yml"
        inventory.write_text(
            "ai_gateway:\n  hosts:\n"
            f"    {self.root}:\n      ansible_connection: community.general.chroot\n"
            "      ansible_become: false\n      ansible_python_interpreter: /usr/bin/python3\n")
        # The host's pip settings (PIP_FIND_LINKS, ...) must not leak into the root through the connection.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        env = {**env, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
               "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_LOCAL_TEMP": str(self.workdir / "ansible-tmp")}
        cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), playbook, *flags, "-e", f"@{FIXTURES / 'converge-vars.yml'}"]
        for key, value in extra.items():
            cmd += ["-e", f"{key}={value}"]
        started = time.monotonic()
        result = subprocess.run(cmd, cwd=ANSIBLE_DIR, env=env, capture_output=True, text=True, timeout=900)
        output = result.stdout + result.stderr
        (self.workdir / f"apply-{len(self.applies) + 1}.log").write_text(output)
        recap = parse_recap(output, str(self.root))
        self.applies.append((recap, output, time.monotonic() - started))
        if step:
            self.steps[step] = len(self.applies) - 1
        if expect_failure:
            if result.returncode == 0:
                raise ConvergeError(f"ansible-playbook was expected to fail but exited 0:\n{output[-6000:]}")
            return recap
        if result.returncode != 0 or recap.failed or recap.unreachable:
            raise ConvergeError(f"ansible-playbook exited {result.returncode}:\n{output[-6000:]}")
        return recap

    def chroot(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["chroot", str(self.root), *args], capture_output=True, text=True, timeout=timeout,
                              env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                                   **(env or {})})

    def applied(self, step: str) -> tuple[Recap, str, float]:
        return self.applies[self.steps[step]]

    def unit_command(self, unit: str, key: str = "ExecStart") -> list[str]:
        """A deployed unit's command line (`ExecStart=` of /etc/systemd/system/<unit>)."""
        text = (self.root / "etc/systemd/system" / unit).read_text()
        return re.search(rf"^{key}=(.+)$", text, re.M).group(1).split()

    def env_file(self) -> dict[str, str]:
        """The deployed /etc/ai-gateway/env (NAME='value' lines), as systemd's EnvironmentFile= reads it."""
        lines = (self.root / "etc/ai-gateway/env").read_text().splitlines()
        return dict(re.fullmatch(r"(\w+)='(.*)'", line).groups() for line in lines if line and not line.startswith("#"))

    @contextlib.contextmanager
    def serving(self, ollama_url: str) -> Iterator[int]:
        """The installed release serving from the root, started the way its units start it.

        A chroot has no systemd to restart services, so this stands in for it: Redis from the root
        with the deployed redis.conf (as user redis), then the gateway unit's ExecStart as user
        ai-gateway with the deployed env file, in its StateDirectory. Only what a test box needs is
        changed: free loopback ports, one worker, and OLLAMA_URL pointing at an Ollama emulator on
        the host's loopback (the chroot shares the network). Yields the gateway's port.
        """
        redis_port, port = free_port(), free_port()
        redis = self._spawn("redis", [CHROOT, "--userspec={}:{}".format(*self.owner("redis")), str(self.root), "/usr/bin/redis-server",
                                      "/etc/redis/redis.conf", "--port", str(redis_port), "--supervised", "no",
                                      "--pidfile", f"/tmp/redis-{redis_port}.pid", "--logfile", ""], {})
        try:
            wait_for(lambda: _tcp_open(redis_port), 30, "Redis from the root did not listen", redis, self.workdir / "redis.log")
            state = self.root / "var/lib/ai-gateway"
            state.mkdir(mode=0o700, exist_ok=True)
            shutil.chown(state, *self.owner("ai-gateway"))
            env = {**self.env_file(), "HOME": "/var/lib/ai-gateway", "PATH": "/usr/local/bin:/usr/bin:/bin",
                   "OLLAMA_URL": ollama_url, "REDIS_URL": self.env_file()["REDIS_URL"].replace(":6379/", f":{redis_port}/")}
            command = self.unit_command("ai-gateway.service")
            command[command.index("--port") + 1] = str(port)
            command[command.index("--workers") + 1] = "1"
            gateway = self._spawn("gateway", [CHROOT, "--userspec={}:{}".format(*self.owner("ai-gateway")), str(self.root), "/bin/sh", "-c",
                                              'cd /var/lib/ai-gateway && exec "$@"', "sh", *command], env)
            try:
                wait_for(lambda: _http_ok(f"http://127.0.0.1:{port}/health/liveliness"), 180,
                         "the gateway from the root did not answer /health/liveliness", gateway,
                         self.workdir / "gateway.log")
                yield port
            finally:
                _stop(gateway)
        finally:
            _stop(redis)

    def owner(self, user: str) -> tuple[int, int]:
        """uid and gid of a user of the root (numbers: the host has no such user to look up)."""
        entry = next(line.split(":") for line in (self.root / "etc/passwd").read_text().splitlines() if line.startswith(f"{user}:"))
        return int(entry[2]), int(entry[3])

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
        with open(self.workdir / f"{name}.log", "ab") as log:
            return subprocess.Popen(cmd, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", **env}, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    def teardown(self, keep: bool = False) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None
        for target in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(target)], capture_output=True)
        self.mounts.clear()
        if not keep:
            self.cleanup(self.workdir)

    @classmethod
    def remove_stale_runs(cls) -> None:
        """Run folders left by a killed run (their pid is gone)."""
        for workdir in CACHE.glob("*-[0-9]*"):
            pid = workdir.name.rsplit("-", 1)[1]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                cls.cleanup(workdir)

    @staticmethod
    def cleanup(workdir: Path) -> None:
        """Remove a run folder, never crossing a mount that is still there."""
        if not workdir.exists():
            return
        for line in reversed(Path("/proc/mounts").read_text().splitlines()):
            mountpoint = line.split()[1]
            if mountpoint.startswith(f"{workdir}/"):
                subprocess.run(["umount", "-l", mountpoint], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)


def parse_recap(output: str, host: str) -> Recap:
    match = re.search(rf"^{re.escape(host)}\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output, re.M)
    if not match:
        raise ConvergeError(f"no PLAY RECAP line for {host} in the output:\n{output[-4000:]}")
    ok, changed, unreachable, failed = map(int, match.groups())
    return Recap(ok=ok, changed=changed, failed=failed, unreachable=unreachable)


def prepare(suites: list[str]) -> int:
    """Build the cached base roots and wheelhouses of `suites` (CI starts this in the background)."""
    failed = 0
    for suite in suites:
        started = time.monotonic()
        try:
            with cache_lock(f"base-{suite}"):
                ensure_base(suite)
            with cache_lock(f"wheels-{SUITE_PYTHON[suite]}"):
                ensure_wheelhouse(SUITE_PYTHON[suite])
            print(f"prepared {suite} in {time.monotonic() - started:.0f} s", flush=True)
        except (ConvergeError, subprocess.TimeoutExpired, OSError) as exc:
            failed += 1
            print(f"could not prepare {suite} (the converge test will say why): {str(exc)[:2000]}", flush=True)
    return 1 if failed else 0


def main() -> None:
    why = missing_prerequisites()
    if why:
        sys.exit(f"cannot converge: {why}")
    if "--prepare" in sys.argv:
        sys.exit(prepare(sys.argv[sys.argv.index("--prepare") + 1:] or ["bookworm"]))
    keep = "--keep" in sys.argv
    converge = Converge.create("manual")
    try:
        extra = converge.extra_vars()
        for n in (1, 2):
            recap = converge.apply(extra)
            print(f"apply {n}: {recap} in {converge.applies[-1][2]:.0f} s")
    finally:
        converge.teardown(keep=keep)
        if keep:
            print(f"kept {converge.root} (mounts released)")


if __name__ == "__main__":
    main()
