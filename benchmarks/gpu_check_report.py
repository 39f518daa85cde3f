"""The GPU check's report: the stages' JSON files and exit statuses as one JSON and one Markdown table.

Used by ``benchmarks/gpu_check.py report``. MFU is computed here, against the matmul rate of the ``env``
stage in the row's precision (bf16, or fp32 as training runs it: TF32 on CUDA), and the best rows are
compared with the issue's targets.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

from tganv2.bench.devicecheck import LOSSES

# the targets (ucf101-192-bsr at global batch 256 in 12 h for 100K iterations; README run's MFU)
TARGETS = {
    "ucf101-192-bsr": {"batch": 256, "iterations_per_s": 2.3, "mfu": 0.31},
    "ucf101-192": {"batch": 128, "mfu": 0.35},
}


def _read_status(work: Path) -> dict:
    status = {}
    path = work / "status.tsv"
    if path.is_file():
        for line in path.read_text().splitlines():
            name, rc, seconds, limit = line.split("\t")
            status[name] = {"returncode": int(rc), "seconds": int(seconds), "limit_s": int(limit)}
    return status


def _add_rates(speed: dict, env: dict | None) -> None:
    rates = (env or {}).get("rates")
    for row in speed.get("rows", []):
        if row.get("median_step_s"):
            row["iterations_per_s"] = 1 / row["median_step_s"]
            row["clips_per_s"] = row["batch"] / row["median_step_s"]
            row["achieved_tflops"] = row["train_step_gflops"] / row["median_step_s"] / 1e3
            if rates:
                rate = rates["bf16_matmul_tflops" if row["precision"] == "bf16" else "fp32_matmul_tflops"]
                row["mfu"] = row["achieved_tflops"] / rate


def _targets(speed: dict) -> list[dict]:
    """The issue's targets against the best measured row (any precision, compiled or not)."""
    out = []
    for preset, target in TARGETS.items():
        rows = [r for r in speed.get("rows", []) if r["preset"] == preset and r["batch"] == target["batch"]]
        best = max((r for r in rows if r.get("mfu") is not None), key=lambda r: r["mfu"], default=None)
        entry = {"preset": preset, **target, "best": None, "met": None}
        if best:
            entry["best"] = {k: best[k] for k in ("precision", "compile", "iterations_per_s", "mfu")}
            fast = best["iterations_per_s"] >= target.get("iterations_per_s", 0)
            entry["met"] = best["mfu"] >= target["mfu"] and fast
        out.append(entry)
    return out


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _section(title: str, header: list[str], rows: list[list]) -> list[str]:
    """A report section: a blank line, its title line, a blank line, its table."""
    return ["", title, "", *_table(header, rows)]


def _md_correctness(stage: dict) -> list[str]:
    if "fp32_vs_float64" not in stage:
        return []
    tolerance = stage["fp32_vs_float64"]["tolerance"]
    rows = []
    for label in ("fp32_vs_float64", "tf32_vs_float64"):
        c = stage[label]
        errors, nets = c["loss_rel_error"], c["networks"]
        rows.append(
            [label.split("_")[0]]
            + [f"{errors[k]:.1e}" for k in LOSSES]
            + [f"{nets[n]['gradient_rel_l2']:.1e}" for n in ("G", "D")]
            + [{True: "yes", False: "**no**", None: "(information)"}[c["passed"]]]
        )
    head = f"Correctness: one {stage['preset']} step ({stage['overrides']}) against the CPU float64 step"
    title = f"{head} ({stage['cpu_float64_seconds']:.0f} s); relative errors, tolerance {tolerance} for fp32:"
    return _section(title, ["run", *LOSSES, "G gradients", "D gradients", "within tolerance"], rows)


def _md_speed(stage: dict) -> list[str]:
    if not stage.get("rows"):
        return []
    rows = []
    for r in stage["rows"]:
        if r["status"] == "ok":
            mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "–"
            cells = [f"{r['iterations_per_s']:.2f}", f"{r['clips_per_s']:.0f}", f"{r['peak_memory_gb']:.1f}"]
            cells += [f"{r['train_step_gflops']:.0f}", mfu]
        else:
            cells = [r.get("reason", ""), "", "", "", ""]
        rows.append(
            [r["preset"], r["precision"], "yes" if r["compile"] else "no", r["batch"], r["status"], *cells]
        )
    header = ["preset", "precision", "compile", "batch", "status", "it/s", "clips/s", "peak GB", "GFLOP/step"]
    warmup = f"{stage['warmup']} warm-up step(s), one more when compiled"
    return _section(f"Speed: median of {stage['iters']} steps after {warmup}:", [*header, "MFU"], rows)


def _md_data(stage: dict) -> list[str]:
    if not stage.get("rows"):
        return []
    rows = [[r["workers"], f"{r['clips_per_s']:.0f}"] for r in stage["rows"]]
    rows_, cols = stage["stored"]
    title = (
        f"Data: the HDF5 loader, {stage['size']} px clips from {rows_}×{cols} frames, batch "
        f"{stage['rows'][0]['batch']} (a synthetic {stage['file_gb']:.2f} GB file, in the page cache); "
        f"goal ≥ {stage['goal_clips_per_s']} clips/s:"
    )
    return _section(title, ["workers", "clips/s"], rows)


def _md_targets(targets: list[dict]) -> list[str]:
    lines = ["", "Targets (issue 13):", ""]
    for t in targets:
        want = f"MFU ≥ {t['mfu']:.0%}" + (
            f", ≥ {t['iterations_per_s']} it/s" if "iterations_per_s" in t else ""
        )
        best = t["best"]
        if best:
            how = f"{best['precision']}{', compiled' if best['compile'] else ''}"
            got = f"best {how}: {best['iterations_per_s']:.2f} it/s, MFU {best['mfu']:.1%}: "
            got += "met" if t["met"] else "**not met**"
        else:
            got = "not measured"
        lines.append(f"* {t['preset']} at batch {t['batch']}: {want}; {got}")
    return lines


def markdown(report: dict) -> str:
    stages = report["stages"]
    env = stages.get("env", {})
    dry = " — **dry run (CPU, tiny configs)**" if report["dry"] else ""
    lines = [
        f"# GPU check: {env.get('device_name', '?')}, {report['date']}",
        "",
        f"`{report['command']}`; torch {env.get('torch')}, CUDA {env.get('cuda')}, "
        f"cuDNN {env.get('cudnn')}{dry}",
        "",
        *_table(
            ["stage", "status", "seconds"],
            [[n, st.get("status"), st.get("seconds", "")] for n, st in stages.items()],
        ),
    ]
    rates = env.get("rates")
    if rates:
        lines += [
            "",
            f"Dense matmul ({rates['matmul_size']}²): bf16 {rates['bf16_matmul_tflops']:.1f} TFLOP/s, "
            f"fp32 as trained ({rates['fp32_matmul_mode']}) {rates['fp32_matmul_tflops']:.1f}, IEEE fp32 "
            f"{rates['ieee_fp32_matmul_tflops']:.1f}; MFU is against the rate of the row's precision.",
        ]
    lines += _md_correctness(stages.get("correctness", {}))
    finite = stages.get("finite", {})
    if "iterations" in finite:
        verdict = "every weight and loss finite" if finite["passed"] else "**not finite**"
        lines += [
            "",
            f"Finite: {finite['iterations']} {finite['precision']} iterations of {finite['preset']} "
            f"(batch {finite['batch']}, {finite['iterations_per_s']:.2f} it/s): {verdict}.",
        ]
    if "summary" in stages.get("gpu-tests", {}):
        lines += ["", f"`pytest -m gpu`: {stages['gpu-tests']['summary']}"]
    lines += _md_speed(stages.get("speed", {}))
    lines += _md_data(stages.get("data", {}))
    lines += _md_targets(report["targets"])
    return "\n".join(lines) + "\n"


def _status(returncode: int) -> str:
    if returncode == -1:
        return "skipped (no time left)"
    return "passed" if returncode == 0 else ("timed out" if returncode in (124, 137) else "FAILED")


def write_report(work: Path, out: Path, stage_names: tuple[str, ...], dry: bool) -> dict[str, Path]:
    """Merge ``work``'s stage JSONs and ``status.tsv`` into ``out/gpu_check.json`` and ``.md``."""
    status = _read_status(work)
    stages = {}
    for name in stage_names:
        path = work / f"{name}.json"
        stage = json.loads(path.read_text()) if path.is_file() else {}
        info = status.get(name)
        if info:
            stage.update(info, status=_status(info["returncode"]))
        elif not stage:
            stage["status"] = "not run"
        stages[name] = stage
    _add_rates(stages.get("speed", {}), stages.get("env"))
    report = {
        "command": os.environ.get("GPU_CHECK_COMMAND", "bash benchmarks/gpu_check.sh"),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "dry": dry,
        "stages": stages,
        "targets": _targets(stages.get("speed", {})),
    }
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "gpu_check.json", "markdown": out / "gpu_check.md"}
    paths["json"].write_text(json.dumps(report, indent=2, default=str) + "\n")
    paths["markdown"].write_text(markdown(report))
    return paths
