"""Wall time and peak memory of ``lvseg predict`` on a whole multi-patient cine study.

``lvseg predict MODEL INPUT --out DIR`` runs as a child process (``python -m lvseg predict``),
exactly as a user runs it: the interpreter's start, the imports, opening the model, reading the
DICOM cines, preprocessing, locating the heart, segmenting every frame and writing every output
(masks, overlays, contours, volume curves, summaries) are all in the figure. Reported:

- **wall time**, best and median of ``--repeats`` runs (after one untimed first run that warms
  the file cache), and **frames per second** from the best run;
- **peak resident memory** of the predict process: each run is started on its own and reaped
  with ``os.wait4(pid)``, whose resource usage is that one child's (``ru_maxrss``, kB on Linux,
  bytes on macOS). ``getrusage(RUSAGE_CHILDREN)`` would not do in this process: it is the
  maximum over *every* child waited for so far, the model export included;
- the **studies and frames** segmented (counted from the written ``summary.json`` files);
- whether **torch** was imported by the predict process (it should not be: predict runs on ONNX
  Runtime alone). The untimed first run does it through a ``-c`` wrapper that calls the Typer
  app in-process (as ``python -m lvseg`` does) and then prints ``'torch' in sys.modules``.

Default input: ``../shared/data/sunnybrook-dicom`` beside the repository (5 patients' DICOM
cines, 1,140 frames). Default model: a freshly initialised LVNet exported to ONNX fp32 in a
temporary folder (speed hardly depends on the weights, but the output does: an untrained net's
masks are arbitrary, so the contour files it writes, and the time to write them, differ from a
trained model's). ``--model`` takes an ``.onnx`` file or an ``lvseg export`` folder (a folder
resolves to its fp32 ``model.onnx``; name ``model.int8.onnx`` to time int8).

Run from the project root::

    .venv/bin/python -m benchmarks.predict_study [--input DIR] [--model PATH] [--repeats 3]
        [--threads N] [--no-tta] [--quality default|none|FILE] [--json results.json]

``--quality`` times predict with quality control (the score embedded in a copy of the model) or
without it (stripped): run both to measure what quality control adds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.timing import wall_times

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = REPO_ROOT.parent / "shared" / "data" / "sunnybrook-dicom"
TORCH_MARKER = "lvseg-benchmark torch imported:"
CHECK_TORCH = f"""
import sys
from lvseg.cli import app
code = app(sys.argv[1:], prog_name="lvseg", standalone_mode=False)
print({TORCH_MARKER!r}, "torch" in sys.modules)
sys.exit(code if isinstance(code, int) else 0)
"""
"""Run ``lvseg ARGS`` in this process, say whether torch got imported, exit with its code
(without standalone mode the app returns the code of a failed command instead of exiting)."""


def fresh_lvnet_onnx(folder: Path) -> Path:
    """A freshly initialised LVNet (plan: no resampling, 128 px crop) exported to ONNX fp32."""
    from lvseg.data.preprocess import PreprocessPlan
    from lvseg.deploy.export import write_onnx
    from lvseg.model.registry import build_model, config_of
    from lvseg.runs.checkpoint import Checkpoint, LoadedModel

    plan = PreprocessPlan(target_spacing_mm=None, crop_size=128, jitter_px=0)
    model = build_model("lvnet").eval()
    checkpoint = Checkpoint("lvnet", config_of(model), model.state_dict(), plan)
    loaded = LoadedModel(model=model, checkpoint=checkpoint, source=Path("fresh-lvnet"))
    path = folder / "model.onnx"
    write_onnx(loaded, path, plan.crop_size)
    return path


def with_quality(model: Path, quality: str, out: Path) -> Path:
    """A copy of the model file whose metadata embeds (or, with 'none', lacks) a quality score."""
    import onnx

    from lvseg.segment import onnx as runtime
    from lvseg.segment.quality import default_quality_model, read_quality_model

    source = runtime.resolve_exported(model)
    proto = onnx.load(str(source))
    values = {entry.key: entry.value for entry in proto.metadata_props if entry.key != "quality"}
    if quality != "none":
        scorer = default_quality_model() if quality == "default" else read_quality_model(quality)
        if scorer is None:
            sys.exit("error: this lvseg ships no quality score (lvseg/segment/quality.json)")
        values["quality"] = json.dumps(scorer.to_dict(), sort_keys=True)
    del proto.metadata_props[:]
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(out))
    return out


def run_child(command: list[str], log: Path) -> tuple[int, int]:
    """Run ``command`` (from the repository root, output to ``log``); its exit code and peak
    resident memory in bytes, from the resource usage of this one child."""
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT)
        _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    scale = 1 if sys.platform == "darwin" else 1024
    return process.returncode, usage.ru_maxrss * scale


def check(code: int, log: Path, what: str) -> str:
    text = log.read_text(encoding="utf-8", errors="replace")
    if code != 0:
        sys.exit(f"error: {what} failed (exit code {code}):\n{text[-3000:]}")
    return text


def count_frames(out: Path) -> tuple[int, int]:
    """Studies and frames (slices x phases) that one predict run wrote summaries for."""
    summaries = sorted(out.rglob("summary.json"))
    frames = 0
    for path in summaries:
        shape = json.loads(path.read_text(encoding="utf-8"))["study"]["shape"]
        frames += shape[0] * shape[1]
    return len(summaries), frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="studies to segment")
    parser.add_argument(
        "--model", type=Path, default=None, help="an .onnx file or export folder (default: fresh)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs")
    parser.add_argument(
        "--threads", type=int, default=None, help="passed to predict (default: all cores)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument(
        "--no-tta",
        action="store_true",
        help="pass --no-tta to predict (an export made with --tta otherwise runs 8 views a crop)",
    )
    parser.add_argument(
        "--quality",
        default=None,
        help="embed this quality-control score in (a copy of) the model, 'default' for the one "
        "lvseg ships, 'none' to strip it: time predict with and without quality control",
    )
    args = parser.parse_args()
    if not args.input.exists():
        sys.exit(
            f"error: {args.input}: no input study (the default is the Sunnybrook DICOM cines "
            "in ../shared/data/sunnybrook-dicom beside the repository; see "
            "../shared/data/README.md, or give --input)"
        )
    if args.model is not None and not args.model.exists():
        sys.exit(f"error: {args.model}: no such model")
    if args.repeats < 1:
        sys.exit("error: --repeats must be at least 1")

    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        if args.model is None:
            model, model_text = fresh_lvnet_onnx(folder), "freshly initialised LVNet, ONNX fp32"
        else:
            model, model_text = args.model.resolve(), str(args.model)
        if args.quality is not None:
            model = with_quality(model, args.quality, folder / "model-quality.onnx")
            model_text += f", quality score: {args.quality}"
        options = [] if args.threads is None else ["--threads", str(args.threads)]
        options += ["--no-tta"] if args.no_tta else []

        def predict_args(out: Path) -> list[str]:
            return ["predict", str(model), str(args.input.resolve()), "--out", str(out), *options]

        log = folder / "predict.log"
        first = folder / "out-first"
        code, _rss = run_child([sys.executable, "-c", CHECK_TORCH, *predict_args(first)], log)
        text = check(code, log, "the first predict run")
        marks = [line for line in text.splitlines() if line.startswith(TORCH_MARKER)]
        if not marks:
            sys.exit(f"error: the first predict run did not report its imports:\n{text[-3000:]}")
        torch_imported = marks[-1].split(":")[-1].strip() == "True"
        studies, frames = count_frames(first)

        peaks: list[int] = []

        def one_run() -> None:
            out = folder / f"out-{len(peaks)}"
            code, rss = run_child([sys.executable, "-m", "lvseg", *predict_args(out)], log)
            check(code, log, "lvseg predict")
            peaks.append(rss)

        times = wall_times(one_run, args.repeats, warm_ups=0)

    best, median = min(times), statistics.median(times)
    threads = "all (ORT default)" if args.threads is None else str(args.threads)
    results: dict[str, Any] = {
        "input": str(args.input),
        "model": model_text,
        "threads": args.threads,
        "studies": studies,
        "frames": frames,
        "wall_seconds": times,
        "wall_seconds_best": best,
        "wall_seconds_median": median,
        "frames_per_second_best": frames / best,
        "peak_rss_bytes": peaks,
        "torch_imported": torch_imported,
        "python": sys.executable,
    }
    print(f"lvseg predict on {args.input} ({studies} studies, {frames:,} frames)")
    print(f"model: {model_text}; threads: {threads}; {args.repeats} timed runs after a first one")
    print()
    print(
        "| studies | frames | wall s, best | wall s, median | frames/s (best) "
        "| peak RSS MiB, max (median) | torch imported |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {studies} | {frames:,} | {best:.2f} | {median:.2f} | {frames / best:.1f} | "
        f"{max(peaks) / 2**20:.0f} ({statistics.median(peaks) / 2**20:.0f}) | "
        f"{'yes' if torch_imported else 'no'} |"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
