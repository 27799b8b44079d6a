"""What produced a measurement: processor, threads, load, library versions and the accelerator, if any."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine_info(device: str = "cpu") -> dict[str, object]:
    """A description of this machine to store beside every number it produces.

    `load_average_1min` is the run queue when the description is taken: on a shared machine it says how much of
    the processors a measurement had (2 cores with a load of 4 give each job about half a core).
    """
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, object] = {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


__all__ = ["machine_info"]
