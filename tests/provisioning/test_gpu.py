"""GPU detection (ansible/roles/ollama/files/detect-gpu.sh, the logic of Ollama's install.sh) with
fake `lspci` and `nvidia-smi` on PATH and a fake sysfs; and `gateway doctor`'s reading of /api/ps."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from proxy_config.doctor import gpu_report
from tests.harness import REPO

SCRIPT = REPO / "ansible/roles/ollama/files/detect-gpu.sh"
# Real output shapes: `lspci -d 10de:` / `lspci -d 1002:` lines, `nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits`.
LSPCI_NVIDIA = "01:00.0 VGA compatible controller: NVIDIA Corporation AD104 [GeForce RTX 4070] (rev a1)"
LSPCI_AMD = "03:00.0 VGA compatible controller: Advanced Micro Devices, Inc. [AMD/ATI] Navi 31 [Radeon RX 7900 XTX] (rev c8)"


def fake_tools(tmp_path: Path, lspci: dict[str, str] | None = None, nvidia_smi: str | None = None) -> Path:
    """A bin/ folder with an lspci answering per `-d <vendor>:` and, optionally, a working nvidia-smi."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if lspci is not None:
        cases = "".join(f"  {vendor}:) echo '{line}' ;;\n" for vendor, line in lspci.items())
        (bin_dir / "lspci").write_text(f"#!/bin/sh\n[ \"$1\" = -d ] || exit 1\ncase \"$2\" in\n{cases}esac\n")
    if nvidia_smi is not None:
        (bin_dir / "nvidia-smi").write_text(
            "#!/bin/sh\ncase \"$1\" in\n  -L) echo 'GPU 0: NVIDIA GeForce RTX 4070 (UUID: GPU-0)' ;;\n"
            f"  --query-gpu=memory.total) printf '{nvidia_smi}' ;;\nesac\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return bin_dir


def detect(tmp_path: Path, bin_dir: Path, sysfs: Path | None = None) -> dict:
    sysfs = sysfs or tmp_path / "sys"
    sysfs.mkdir(exist_ok=True)
    result = subprocess.run(["/bin/sh", str(SCRIPT)], capture_output=True, text=True, timeout=30,
                            env={"PATH": f"{bin_dir}:/usr/bin:/bin", "GPU_DETECT_SYSFS": str(sysfs)})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_no_gpu(tmp_path: Path) -> None:
    bin_dir = fake_tools(tmp_path, lspci={})
    assert detect(tmp_path, bin_dir) == {"vendor": "none", "driver": False, "vram_mb": 0, "uvm_loaded": False}


def test_nvidia_with_a_working_driver_sums_vram_over_gpus(tmp_path: Path) -> None:
    bin_dir = fake_tools(tmp_path, lspci={"10de": LSPCI_NVIDIA}, nvidia_smi="12282\\n12282\\n")
    sysfs = tmp_path / "sys"
    (sysfs / "module/nvidia_uvm").mkdir(parents=True)
    assert detect(tmp_path, bin_dir, sysfs) == {"vendor": "nvidia", "driver": True, "vram_mb": 24564, "uvm_loaded": True}


def test_nvidia_card_without_driver_is_reported_so_the_role_can_refuse_it(tmp_path: Path) -> None:
    bin_dir = fake_tools(tmp_path, lspci={"10de": LSPCI_NVIDIA})
    assert detect(tmp_path, bin_dir) == {"vendor": "nvidia", "driver": False, "vram_mb": 0, "uvm_loaded": False}


def test_amd_reads_vram_from_amdgpu_sysfs(tmp_path: Path) -> None:
    bin_dir = fake_tools(tmp_path, lspci={"1002": LSPCI_AMD})
    sysfs = tmp_path / "sys"
    card = sysfs / "class/drm/card0/device"
    card.mkdir(parents=True)
    (card / "mem_info_vram_total").write_text(str(24 * 1024 * 1024 * 1024))
    assert detect(tmp_path, bin_dir, sysfs) == {"vendor": "amd", "driver": True, "vram_mb": 24576, "uvm_loaded": False}


def test_amd_without_amdgpu_bound_has_no_driver(tmp_path: Path) -> None:
    bin_dir = fake_tools(tmp_path, lspci={"1002": LSPCI_AMD})
    assert detect(tmp_path, bin_dir)["driver"] is False


@pytest.mark.parametrize(("ps", "expected"), [
    ({"models": []}, "no model loaded"),
    ({"models": [{"name": "qwen2.5:7b", "size": 5_000, "size_vram": 5_000}]}, "loaded: qwen2.5:7b on the GPU"),
    ({"models": [{"name": "qwen2.5:7b", "size": 5_000, "size_vram": 0}]}, "qwen2.5:7b on the CPU (size_vram 0"),
    ({"models": [{"name": "mistral:7b", "size": 8_000, "size_vram": 6_000}]}, "mistral:7b 75% on the GPU"),
])
def test_doctor_tells_where_ollama_runs_each_loaded_model(ps: dict, expected: str) -> None:
    assert expected in gpu_report(ps)
