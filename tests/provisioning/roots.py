"""The cached parts of a converge: base roots, the wheelhouse, the cache lock (tests.provisioning.converge
uses them for each run).

- a pristine `debootstrap --variant=minbase` root per release (bookworm from the Debian mirror this
  machine uses; jammy and noble from Ubuntu's archive), cached under CACHE/base-<suite> (a real
  server has systemd, so the root includes it for `systemd-analyze`);
- a wheelhouse of requirements.lock (+ setuptools for the build) for the root's Python, made on the
  host and mounted read-only in the root, so pip in the root installs with --no-index;
- one lock per cache entry, so concurrent runs (CI's background preparation) never build one twice.

How it fails: a command that fails raises ConvergeError with its output; `missing_prerequisites`
says why a converge cannot run here (not root, a tool missing).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
VENV_BIN = Path(sys.executable).parent
CACHE = Path(os.environ.get("GATEWAY_CONVERGE_CACHE", "/var/cache/gateway-converge"))
WHEELS = CACHE / "wheels"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Besides requirements.lock: pyproject's build backend (pip's isolated build of the project), and
# redis's dependency on Python < 3.11.3 (Debian 12 has 3.11.2), which a lock made on 3.11.7 lacks.
WHEELHOUSE_EXTRAS = ("setuptools==80.9.0", "async-timeout==5.0.1")


class ConvergeError(RuntimeError):
    pass


def run(cmd: list[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    if result.returncode != 0:
        raise ConvergeError(f"{' '.join(map(str, cmd))} exited {result.returncode}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def missing_prerequisites() -> str | None:
    """Why the converge cannot run here, or None."""
    if os.geteuid() != 0:
        return "the converge needs root (debootstrap, chroot, mount); CI runs as root"
    for tool in ("debootstrap", "chroot", "zstd", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not (VENV_BIN / "ansible-playbook").exists():
        return "ansible-playbook is not installed in the venv (requirements-test.txt)"
    return None


def debian_mirror(sources: tuple[Path, ...] = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))) -> str:
    """The Debian mirror this machine's apt uses (deb822 `URIs:` or one-line `deb URL`)."""
    files: list[Path] = []
    for path in sources:
        files += sorted(path.glob("*.sources")) + sorted(path.glob("*.list")) if path.is_dir() else [path]
    for path in files:
        if not path.is_file():
            continue
        for match in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", path.read_text(), re.M):
            url = match.group(1).rstrip("/")
            if url.endswith("/debian"):
                return url
    return DEFAULT_MIRROR


@contextlib.contextmanager
def cache_lock(name: str = "runs"):
    """Serialise building one cache entry (a base root, a wheelhouse) between concurrent runs.

    One lock per entry: the Ubuntu roots can be prepared in the background (`--prepare`) while the
    Debian converge runs.
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".lock-{name}", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


UBUNTU_MIRROR = "http://archive.ubuntu.com/ubuntu"
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"


def ensure_base(suite: str = "bookworm") -> Path:
    """The cached pristine root of `suite` (debootstrap takes one to a few minutes).

    Ubuntu suites come from Ubuntu's archive, with universe (redis-server, python3.11) and the
    -updates pocket. Debian's machines have no ubuntu-keyring package, so those roots are built
    with --no-check-gpg: a test root only, never a template for a server.
    """
    base = CACHE / f"base-{suite}"
    if (base / ".complete").exists():
        return base
    tmp = CACHE / f"base-{suite}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    include = "--include=python3,python3-apt,systemd"
    if suite == "bookworm":
        run(["debootstrap", "--variant=minbase", include, suite, str(tmp), debian_mirror()], timeout=1200)
    else:
        # Debian 12's debootstrap has no script named noble; every Ubuntu suite uses the same one (gutsy).
        script = [] if Path(f"/usr/share/debootstrap/scripts/{suite}").exists() else ["/usr/share/debootstrap/scripts/gutsy"]
        run(["debootstrap", "--variant=minbase", "--no-check-gpg", "--components=main,universe", include, suite, str(tmp),
             UBUNTU_MIRROR, *script], timeout=1800)
        (tmp / "etc/apt/sources.list").write_text(
            f"deb {UBUNTU_MIRROR} {suite} main universe\ndeb {UBUNTU_MIRROR} {suite}-updates main universe\n")
        (tmp / "etc/apt/apt.conf.d/99converge-unsigned").write_text('Acquire::AllowInsecureRepositories "true";\n'
                                                                   'APT::Get::AllowUnauthenticated "true";\n')
        # debootstrap's fresh lists lack -updates (python3.11 on jammy lives there), and the roles'
        # apt tasks trust a cache younger than an hour: update it now, as a real host's would be.
        shutil.copy("/etc/resolv.conf", tmp / "etc/resolv.conf")
        run(["chroot", str(tmp), "apt-get", "update", "-qq"], timeout=600)
    shutil.rmtree(base, ignore_errors=True)
    tmp.rename(base)
    (base / ".complete").touch()
    return base


# The Python each suite's gateway venv uses (gateway role vars): its wheels must match it.
SUITE_PYTHON = {"bookworm": "3.11", "jammy": "3.11", "noble": "3.12"}


def find_python(version: str) -> str | None:
    """A working python<version>: on PATH, or a pyenv build (pyenv's shim may not be active)."""
    candidates = [shutil.which(f"python{version}"), *map(str, sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}")))]
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return candidate
    return None


def ensure_wheelhouse(python: str = "3.11") -> Path:
    """Wheels for requirements.lock, built once per lock file content and Python version.

    3.11 wheels are built by this venv's Python. Another version is built by that interpreter when
    one is on PATH (python3.12, e.g. from pyenv); without one, this venv's pip downloads that
    version's published binary wheels (`pip download --only-binary=:all: --python-version ...`):
    every pin in requirements.lock has a manylinux or pure-Python wheel on PyPI.
    """
    lock = REPO / "requirements.lock"
    wheels = WHEELS if python == "3.11" else CACHE / f"wheels-{python}"
    stamp = wheels / ".lock-sha256"
    digest = hashlib.sha256(lock.read_bytes() + "\n".join(WHEELHOUSE_EXTRAS).encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return wheels
    interpreter = str(VENV_BIN / "python") if python == "3.11" else find_python(python)
    wheels.mkdir(parents=True, exist_ok=True)
    if interpreter is None:
        # pip matches --platform tags literally (no manylinux_2_35 -> 2_17 expansion): list the glibc
        # levels every Ubuntu root we build has (jammy 2.35, noble 2.39).
        machine = os.uname().machine
        platforms = [f"manylinux{level}_{machine}" for level in ("1", "2010", "2014")]
        platforms += [f"manylinux_2_{minor}_{machine}" for minor in (5, 12, 17, 24, 27, 28, 31, 34, 35)]
        run([str(VENV_BIN / "python"), "-m", "pip", "download", "-q", "--dest", str(wheels), "--only-binary=:all:",
             "--python-version", python, *(arg for platform in platforms for arg in ("--platform", platform)),
             "-r", str(lock), *WHEELHOUSE_EXTRAS], timeout=1200)
    else:
        run([interpreter, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheels), "--find-links", str(wheels),
             "-r", str(lock), *WHEELHOUSE_EXTRAS], timeout=1200)
    stamp.write_text(digest)
    return wheels
