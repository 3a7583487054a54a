#!/bin/sh
# Which GPU Ollama can use on this host, as one line of JSON:
#   {"vendor": "nvidia"|"amd"|"none", "driver": true|false, "vram_mb": N, "uvm_loaded": true|false}
# The same detection as Ollama's scripts/install.sh (check_gpu): nvidia-smi means a working NVIDIA
# driver; otherwise PCI vendor ids from lspci (10de NVIDIA, 1002 AMD). VRAM: nvidia-smi's
# memory.total, or amdgpu's mem_info_vram_total in sysfs. GPU_DETECT_SYSFS overrides /sys (tests).
set -u
SYSFS="${GPU_DETECT_SYSFS:-/sys}"
available() { command -v "$1" >/dev/null 2>&1; }

vendor=none driver=false vram_mb=0 uvm_loaded=false
if available nvidia-smi && nvidia-smi -L >/dev/null 2>&1; then
    vendor=nvidia driver=true
    vram_mb=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null \
              | awk '{ sum += $1 } END { printf "%d", sum }')
elif available lspci && lspci -d '10de:' 2>/dev/null | grep -q 'NVIDIA'; then
    vendor=nvidia  # the card is there, its driver is not
elif available lspci && lspci -d '1002:' 2>/dev/null | grep -Eq 'VGA|Display|3D'; then
    vendor=amd
    for file in "$SYSFS"/class/drm/card*/device/mem_info_vram_total; do
        [ -r "$file" ] || continue
        vram_mb=$((vram_mb + $(cat "$file") / 1048576))
        driver=true  # amdgpu exposes mem_info_vram_total only when it is bound to the card
    done
fi
if [ -e "$SYSFS/module/nvidia_uvm" ]; then
    uvm_loaded=true
fi
printf '{"vendor": "%s", "driver": %s, "vram_mb": %d, "uvm_loaded": %s}\n' "$vendor" "$driver" "${vram_mb:-0}" "$uvm_loaded"
