"""Deployment speed and size of LVNet and the U-Net: PyTorch fp32, ONNX Runtime fp32 and int8.

For each model and runtime, in one run:

- **latency**: one preprocessed slice (1 x 1 x crop x crop, the crop of the model's plan, 128 by
  default) on ONE CPU thread (``torch.set_num_threads(1)``; ONNX Runtime opened with
  ``open_model(path, threads=1)``), median and best of ``--repeats`` calls after warm-ups;
- **throughput**: batches of ``--batch`` slices on ``--threads`` threads (default: every core
  this process may use), slices/s from the median of ``--batch-repeats`` calls; each model's
  latencies are all measured before its first multi-threaded run, so no idle thread pool
  competes with the one thread being timed;
- **size on disk**: PyTorch, the state dict saved with ``torch.save`` in fp32; ONNX, the fp32
  file of :func:`lvseg.deploy.export.write_onnx` and the int8 file of
  :func:`~lvseg.deploy.export.write_int8` (static QDQ quantisation, as ``lvseg export --int8``
  writes them, metadata included);
- **speed-ups** against the U-Net in PyTorch fp32, and the aim of the deployment work: LVNet int8
  at least 10x faster than that on one thread (median latency), and under 1 MB (10^6 bytes).

By default the networks are freshly initialised (``build_model``, eval mode; speed does not
depend on the weights), with the plan ``target_spacing_mm=None, crop_size=128``, and int8 is
calibrated on the LV-labelled slices of a small in-memory phantom (``--phantom-patients``). With
``--lvnet RUN_OR_PT`` / ``--unet RUN_OR_PT`` a trained model is used instead and calibrated as
``lvseg export`` does it: on slices of its own training data (``check_slices``).

int8 latency depends on the CPU's int8 dot-product instructions (x86 AVX-VNNI / AVX512-VNNI /
AMX, ARM dot-product): without them ONNX Runtime's int8 kernels may be no faster, or slower,
than fp32. The CPU model, its int8-relevant flags and the library versions are printed above the
table; compare figures from the same machine only, and measure on an otherwise idle one.

Run from the project root::

    .venv/bin/python -m benchmarks.deploy_speed [--repeats 50] [--batch 32] [--threads N]
        [--lvnet RUN_OR_PT] [--unet RUN_OR_PT] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch

from benchmarks.timing import wall_times
from lvseg.data.phantom import phantom_dataset
from lvseg.data.preprocess import PreprocessPlan
from lvseg.data.records import LV, SliceRecord
from lvseg.deploy.export import (
    LogitsOnly,
    check_slices,
    crops,
    metadata,
    segment_checks,
    write_int8,
    write_onnx,
)
from lvseg.model.registry import build_model, config_of
from lvseg.runs.checkpoint import Checkpoint, LoadedModel, load_model
from lvseg.segment.network import TorchNetwork
from lvseg.segment.onnx import open_model

MODELS = ("lvnet", "unet")
REFERENCE = ("unet", "pytorch fp32")
AIM = ("lvnet", "onnxruntime int8")
AIM_SPEED_UP = 10.0
AIM_BYTES = 1_000_000
LATENCY_WARM_UPS = 3
INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
"""CPU flags (``/proc/cpuinfo``) that decide how fast int8 kernels can be."""


def cpu_description() -> str:
    """The CPU model and its int8-relevant flags, as far as this platform says."""
    name, flags = "", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "hardware", "cpu model") and not name:
                name = value.strip()
            elif key in ("flags", "features") and not flags:
                flags = set(value.split())
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    present = [flag for flag in INT8_FLAGS if flag in flags]
    return f"{name} (int8-relevant flags: {', '.join(present) or 'none found'})"


def available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def fresh_model(name: str) -> LoadedModel:
    """A freshly initialised model, shaped like a loaded checkpoint for the export writers."""
    plan = PreprocessPlan(target_spacing_mm=None, crop_size=128, jitter_px=0)
    model = build_model(name).eval()
    checkpoint = Checkpoint(name, config_of(model), model.state_dict(), plan)
    return LoadedModel(model=model, checkpoint=checkpoint, source=Path(f"fresh-{name}"))


def phantom_slices(patients: int) -> list[SliceRecord]:
    """The LV-labelled slices (ED and ES) of a small in-memory phantom."""
    return [r for r in phantom_dataset(patients=patients, seed=0).records if LV in r.masks]


def state_dict_bytes(model: torch.nn.Module, path: Path) -> int:
    """Size on disk of the model's state dict saved in fp32 with ``torch.save``."""
    state = {
        key: value.float() if torch.is_floating_point(value) else value
        for key, value in model.state_dict().items()
    }
    torch.save(state, path)
    return path.stat().st_size


def latency_ms(run: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median and best wall time of ``run`` in ms."""
    times = wall_times(run, repeats, warm_ups=LATENCY_WARM_UPS)
    return statistics.median(times) * 1000, min(times) * 1000


def measure_model(
    loaded: LoadedModel,
    calibration: list[SliceRecord],
    folder: Path,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """Latency, throughput and size of one model in PyTorch fp32, ORT fp32 and ORT int8."""
    crop = loaded.plan.crop_size
    rng = np.random.default_rng(0)
    single = rng.standard_normal((1, 1, crop, crop), dtype=np.float32)
    batch = rng.standard_normal((args.batch, 1, crop, crop), dtype=np.float32)

    torch_path = folder / f"{loaded.name}.pt"
    onnx_path = folder / f"{loaded.name}.onnx"
    int8_path = folder / f"{loaded.name}.int8.onnx"
    files = {"pytorch fp32": (torch_path, state_dict_bytes(loaded.model, torch_path))}
    write_onnx(loaded, onnx_path, crop)
    files["onnxruntime fp32"] = (onnx_path, onnx_path.stat().st_size)
    prepared = crops(segment_checks(TorchNetwork(loaded.model), loaded.plan, calibration))
    write_int8(onnx_path, int8_path, prepared, metadata(loaded, "fp32"))
    files["onnxruntime int8"] = (int8_path, int8_path.stat().st_size)

    wrapper = LogitsOnly(loaded.model).eval()

    def runner(runtime: str, images: np.ndarray, threads: int) -> Callable[[], object]:
        if runtime == "pytorch fp32":
            tensor = torch.from_numpy(images)

            def run() -> object:
                with torch.inference_mode():
                    return wrapper(tensor)

            return run
        session = open_model(files[runtime][0], threads=threads)
        return lambda: session.logits(images)

    # Every latency before any multi-threaded run: no idle, spinning thread pool (OpenMP's,
    # ONNX Runtime's) competes with the single thread being timed.
    torch.set_num_threads(1)
    latency = {runtime: latency_ms(runner(runtime, single, 1), args.repeats) for runtime in files}
    torch.set_num_threads(args.threads)
    rows = []
    for runtime, (path, size) in files.items():
        run_batch = runner(runtime, batch, args.threads)
        batch_s = statistics.median(wall_times(run_batch, args.batch_repeats))
        rows.append(
            {
                "model": loaded.name,
                "runtime": runtime,
                "file": path.name,
                "bytes": size,
                "input": f"{crop}x{crop}",
                "latency_ms_median": latency[runtime][0],
                "latency_ms_best": latency[runtime][1],
                "slices_per_s": args.batch / batch_s,
            }
        )
    return rows


def load(name: str, spec: Path | None, phantom_patients: int) -> tuple[LoadedModel, list, str]:
    """The model, its int8 calibration slices and one phrase saying where both come from."""
    if spec is None:
        slices = phantom_slices(phantom_patients)
        how = f"freshly initialised; int8 calibrated on {len(slices)} phantom slices"
        return fresh_model(name), slices, how
    loaded = load_model(spec)
    if loaded.name != name:
        sys.exit(f"error: {spec} holds a {loaded.name} model, not {name}")
    calibrate, _checks, where = check_slices(loaded, None)
    return loaded, calibrate, f"{spec}; int8 calibrated on {len(calibrate)} slices of {where}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=50, help="timed single-slice calls")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batch-repeats", type=int, default=5, help="timed batch calls")
    parser.add_argument(
        "--threads", type=int, default=available_cores(), help="threads for the batched runs"
    )
    parser.add_argument("--lvnet", type=Path, default=None, help="a trained LVNet run or .pt")
    parser.add_argument("--unet", type=Path, default=None, help="a trained U-Net run or .pt")
    parser.add_argument(
        "--phantom-patients", type=int, default=2, help="phantom patients to calibrate fresh models"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    specs = {"lvnet": args.lvnet, "unet": args.unet}

    torch.manual_seed(0)
    rows, sources = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for name in MODELS:
            loaded, calibration, sources[name] = load(name, specs[name], args.phantom_patients)
            rows.extend(measure_model(loaded, calibration, Path(folder), args))

    reference = next(r for r in rows if (r["model"], r["runtime"]) == REFERENCE)
    for row in rows:
        row["latency_speed_up"] = reference["latency_ms_median"] / row["latency_ms_median"]
        row["throughput_speed_up"] = row["slices_per_s"] / reference["slices_per_s"]
    target = next(r for r in rows if (r["model"], r["runtime"]) == AIM)
    fast = target["latency_speed_up"] >= AIM_SPEED_UP
    small = target["bytes"] < AIM_BYTES
    aim = {
        "met": fast and small,
        "latency_speed_up": target["latency_speed_up"],
        "bytes": target["bytes"],
        "required_speed_up": AIM_SPEED_UP,
        "max_bytes": AIM_BYTES,
    }
    environment = {
        "cpu": cpu_description(),
        "cores": available_cores(),
        "threads": args.threads,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
        "models": sources,
    }

    print(f"CPU: {environment['cpu']}, {environment['cores']} cores available")
    print(
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"python {environment['python']}"
    )
    for name, how in sources.items():
        print(f"{name}: {how}")
    print()
    print(
        f"| model | runtime | file MB | latency ms, 1 thread: median (best of {args.repeats}) "
        f"| vs U-Net PyTorch | slices/s, batch {args.batch}, {args.threads} threads "
        "| vs U-Net PyTorch |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['runtime']} | {r['bytes'] / 1e6:.3f} | "
            f"{r['latency_ms_median']:.2f} ({r['latency_ms_best']:.2f}) | "
            f"{r['latency_speed_up']:.1f}x | {r['slices_per_s']:.1f} | "
            f"{r['throughput_speed_up']:.1f}x |"
        )
    print()
    verdict = "met" if aim["met"] else "NOT met"
    print(
        f"aim (LVNet int8 >= {AIM_SPEED_UP:.0f}x faster than U-Net fp32 PyTorch on 1 thread, "
        f"< {AIM_BYTES / 1e6:.0f} MB): {verdict}: {target['latency_speed_up']:.1f}x "
        f"({'ok' if fast else 'too slow'}), {target['bytes'] / 1e6:.3f} MB "
        f"({'ok' if small else 'too large'})"
    )
    if args.json:
        results = {"environment": environment, "rows": rows, "aim": aim}
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
