"""``tganv2 bench cost | scaling | step``: evidence for the paper's cost claims (docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..arguments import command_group
from ..config import VARIANTS, Config, ConfigError, add_config_arguments, config_from_args, config_to_dict
from ..device import DEVICE_HELP, resolve_device
from ..errors import UserError
from . import step as bench_step  # through the module: tests replace bench_step.run_in_child
from .cost import cost_report
from .scaling import growth_figure, scaling_figure, scaling_report


def _provenance() -> dict:
    """Who produced a figure: the command line and the date (kept with every JSON record)."""
    return {"command": "tganv2 " + shlex.join(sys.argv[1:]), "date": datetime.date.today().isoformat()}


def _write_or_print(document: dict, output: str | None) -> None:
    text = json.dumps(document, indent=2)
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text + "\n")
    else:
        print(text)


def _show(args: argparse.Namespace, report: dict, print_tables) -> int:
    """The report with its provenance: ``print_tables(report)``, or with ``--json`` the JSON document
    (printed, or only written to ``--output`` when given); ``--output`` also writes it after the tables."""
    report.update(_provenance())
    if args.json:
        _write_or_print(report, args.output)
        return 0
    print_tables(report)
    if args.output:
        _write_or_print(report, args.output)
    return 0


def _fmt(values: list[float], digits: int) -> list[str]:
    return [f"{v:.{digits}f}" for v in values]


# --- cost --------------------------------------------------------------------------------------------------


def run_cost(args: argparse.Namespace) -> int:
    if args.batch < 1:
        raise UserError(f"--batch must be >= 1, got {args.batch}")
    cfg = config_from_args(args)
    report = cost_report(cfg, args.batch, official_conventions=args.fractional_batch)
    if args.peak_memory:
        report["peak_memory"] = _peak_memory(args, cfg, report)
    return _show(args, report, _print_cost)


def _peak_memory(args: argparse.Namespace, cfg: Config, report: dict) -> dict:
    """One real ``Trainer.step`` per variant of the resolved ``cfg`` in a child process: its peak memory."""
    device = str(resolve_device(args.device))
    out = {"device": device, "batch": args.batch, "variants": {}}
    for variant, cost in report["variants"].items():
        if "same_model_as" in cost:  # the same model: measured once
            out["variants"][variant] = {
                **out["variants"][cost["same_model_as"]],
                "same_model_as": cost["same_model_as"],
            }
            continue
        try:
            variant_cfg = bench_step.step_config(cfg, variant, args.batch, "fp32")
        except ConfigError as e:  # e.g. a batch that the variant's batch strides do not divide
            out["variants"][variant] = {"error": str(e)}
            continue
        spec = {
            "variant": variant,
            "config": config_to_dict(variant_cfg),
            "device": device,
            "warmup": 0,
            "iters": 1,
        }
        run = bench_step.run_in_child(spec)
        keys = (
            "peak_memory_gb",
            "peak_rss_gb",
            "rss_before_step_gb",
            "peak_allocated_gb",
            "generator_parameters",
            "discriminator_parameters",
            "error",
        )
        out["variants"][variant] = {k: run[k] for k in keys if k in run}
    return out


def _print_cost(report: dict) -> None:
    console = Console()
    official = report["official"]
    conventions = "fractional batch, Chainer CLSTM convs" if report["fractional_batch"] else "integer batch"
    console.print(
        f"[bold]tganv2 bench cost[/bold]: preset [cyan]{report['preset']}[/cyan], batch {report['batch']} "
        f"({conventions}); one forward pass per level"
    )
    for net in ("generator", "discriminator"):
        quantities = (("forward_gflops", "GFLOPs", 2), ("activation_gb", "saved activation GB", 3))
        for key, unit, digits in quantities:
            n_levels = len(next(iter(report["variants"].values()))[net][key])
            table = Table(title=f"{net}: {unit} per level")
            table.add_column("variant")
            for level in range(1, n_levels + 1):
                table.add_column(f"L{level}", justify="right")
            table.add_column("total", justify="right")
            table.add_column("max rel. err", justify="right")
            for name, variant in report["variants"].items():
                values = variant[net][key]
                table.add_row(name, *_fmt(values, digits), f"{sum(values):.{digits}f}", "")
                row = official.get(net, {}).get(name, {})
                ref = row.get("official_gflops" if key == "forward_gflops" else "official_activation_gb")
                if ref:
                    err = f"{row['max_rel_error']:.2%}" if key == "forward_gflops" else ""
                    total = f"{sum(ref):.{digits}f}"
                    table.add_row("  official", *_fmt(ref, digits), total, err, style="dim")
            console.print(table)
        reduction = official.get(net, {}).get("memory_reduction")
        if reduction:
            console.print(
                f"{net} activation memory, no-subsampling / frame+batch: measured "
                f"×{reduction['measured']:.1f}, "
                f"official ×{reduction['official']:.1f}"
            )
    table = Table(title="training step GFLOPs (forward + backward, integer level batches)")
    for col in ("variant", "generator", "D on fakes", "D on reals", "R1", "total"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for name, variant in report["variants"].items():
        step = variant["train_step_gflops"]
        values = [step["generator"], step["d_fake"], step["d_real"], step["r1"]]
        table.add_row(name, *_fmt(values, 1), f"{sum(values):.1f}")
    console.print(table)
    if "peak_memory" in report:
        peak = report["peak_memory"]
        for name, run in peak["variants"].items():
            text = run.get("error") or f"{run['peak_memory_gb']:.3f} GB"
            where = f"{peak['device']}, batch {peak['batch']}"
            console.print(f"peak memory of one step ({where}), {name}: {text}")


# --- scaling -----------------------------------------------------------------------------------------------


def run_scaling(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    report = scaling_report(cfg, args.batch)
    if args.plot:
        report["plot"] = str(scaling_figure(report, args.plot))
    if args.growth_plot:
        report["growth_plot"] = str(growth_figure(report, args.growth_plot))
    return _show(args, report, _print_scaling)


def _print_scaling(report: dict) -> None:
    console = Console()
    for family, variants in report["families"].items():
        table = Table(title=f"{family}: G + D forward, batch {report['batch']} (fractional per level)")
        for col in ("variant", "px", "levels", "activation GB", "GFLOPs"):
            table.add_column(col, justify="left" if col == "variant" else "right")
        for name, result in variants.items():
            for row in result["rows"]:
                table.add_row(
                    name,
                    str(row["resolution"]),
                    str(row["levels"]),
                    f"{row['activation_gb']:.3f}",
                    f"{row['gflops']:.1f}",
                )
        console.print(table)
        for name, result in variants.items():
            increments = ", ".join(f"+{v:.3f}" for v in result["activation_increment_gb"])
            console.print(
                f"  {name}: ×{result['activation_growth_per_doubling']:.2f} memory and "
                f"×{result['gflops_growth_per_doubling']:.2f} FLOPs per doubling; GB added per doubling: "
                f"{increments}"
            )
    if "plot" in report:
        console.print(f"plot written to {report['plot']}")


# --- step --------------------------------------------------------------------------------------------------


def run_step(args: argparse.Namespace) -> int:
    if args.iters < 1 or args.warmup < 0 or args.repeats < 1:
        raise UserError("--iters and --repeats must be >= 1 and --warmup >= 0")
    cfg = config_from_args(args)  # a bad preset, file or key fails here, in one line
    report = bench_step.step_report(
        cfg,
        precision=args.precision,
        compile=args.compile,
        batch=args.batch,
        iters=args.iters,
        warmup=args.warmup,
        device=str(resolve_device(args.device)),
        variants=tuple(args.variants),
        find_max_batch=args.find_max_batch,
        max_batch=args.max_batch,
        memory_budget_gb=args.memory_budget_gb,
        repeats=args.repeats,
        threads=args.threads,
        matmul_size=args.matmul_size,
    )
    return _show(args, report, _print_step)


def _print_step(report: dict) -> None:
    print(
        f"{report['device_name']} ({report['device']}), {report['date']}; preset {report['preset']}, "
        f"{report['precision']}{', compiled G' if report['compile'] else ''}, batch {report['batch']}, "
        f"median of {report['repeats']}×{report['iters']} steps after {report['warmup']} warm-up"
    )
    print(
        f"measured matmul rate ({report['matmul_threads']} threads): bf16 "
        f"{report['bf16_matmul_tflops'] * 1e3:.3g} GFLOP/s, fp32 ({report['fp32_matmul_mode']}) "
        f"{report['fp32_matmul_tflops'] * 1e3:.3g} GFLOP/s"
    )
    for name, run in report["variants"].items():
        if run.get("error") or not run.get("median_step_s"):
            print(f"  {name}: failed ({run.get('error') or 'out of memory'})")
            continue
        line = (
            f"  {name}: {run['iterations_per_s']:.3f} it/s (median {run['median_step_s']:.2f} s/step, "
            f"fastest {run.get('min_step_s') or float('nan'):.2f} s, "
            f"{run.get('median_step_cpu_s') or float('nan'):.2f} CPU-s), "
            f"peak {run['peak_memory_gb']:.2f} GB, {run['train_step_gflops']:.0f} GFLOP/step, "
            f"MFU {_mfu_text(report, run)}"
        )
        if "largest_batch" in run:
            line += f"; largest batch {run['largest_batch']}"
        print(line)


def _mfu_text(report: dict, run: dict) -> str:
    """MFU against the run's precision, and against the other precision's rate where that one is faster.

    Where bf16 is emulated (no AVX-512-bf16 or AMX) its matmul rate is far below fp32's, and an fp32 step
    measured against it reads thousands of percent: only the faster rate is a ceiling worth naming.
    """
    own = report["precision"]  # fp32 | bf16
    other = "fp32" if own == "bf16" else "bf16"
    text = f"{run['mfu']:.1%} of the {own} matmul rate"
    if report[f"{other}_matmul_tflops"] > report[f"{own}_matmul_tflops"]:
        text += f" ({run[f'mfu_vs_{other}_matmul']:.1%} of the faster {other} rate)"
    return text


# --- registration ------------------------------------------------------------------------------------------


def _add_report_arguments(parser: argparse.ArgumentParser, default_view: str) -> None:
    """``--json`` and ``--output``, shared by every bench command."""
    parser.add_argument(
        "--json", action="store_true", help=f"print the JSON document instead of {default_view}"
    )
    parser.add_argument("--output", help="also write the JSON document to this file")


def add_commands(subparsers) -> None:
    bench = subparsers.add_parser(
        "bench",
        help="cost benchmarks: per-level FLOPs/memory, scaling with resolution, training speed",
        description="Evidence for the paper's cost claims (see docs/benchmarks.md).",
    )
    sub = command_group(bench, "bench_command", "BENCH")

    cost = sub.add_parser(
        "cost",
        help="per-level forward GFLOPs and activation memory of a preset and its Table 1 ablations",
        description="Per-level forward GFLOPs and saved-activation GB of G and D, and training-step GFLOPs, "
        f"for the config as given and each Table 1 ablation on its own number of layers "
        f"({', '.join(VARIANTS)}) at the same batch (meta device: deterministic, no GPU). "
        "With --batch 4 --fractional-batch the official figure/gflops.tsv conventions are used and the "
        "matching official rows are compared.",
    )
    add_config_arguments(cost, "ucf101-192-bsr")
    cost.add_argument("--batch", type=int, default=4, help="level-1 batch (default 4, as the official table)")
    cost.add_argument(
        "--fractional-batch",
        action="store_true",
        help="official table conventions: level l counts batch/Π strides samples (may be < 1) and the "
        "ConvLSTM input convolution Chainer runs on zeros is counted",
    )
    cost.add_argument(
        "--peak-memory",
        action="store_true",
        help="also run one real step per variant in a child process and report its peak memory "
        "(heavy for full-size presets on CPU)",
    )
    cost.add_argument("--device", default="auto", help=f"device for --peak-memory: {DEVICE_HELP}")
    _add_report_arguments(cost, "tables")
    cost.set_defaults(func=run_cost)

    scaling = sub.add_parser(
        "scaling",
        help="activation memory and FLOPs against the final resolution (64-512 px)",
        description="G + D forward activation memory and FLOPs for final resolutions 64-512 px, the "
        "preset's subsampling ('preset') and no-subsampling, with 4 fixed levels (t_size 1-8) and with one "
        "level per doubling.",
    )
    add_config_arguments(scaling, "ucf101-192-bsr")
    scaling.add_argument("--batch", type=int, default=4, help="level-1 batch (default 4)")
    scaling.add_argument("--plot", help="write a PNG plot here (e.g. docs/scaling.png)")
    scaling.add_argument("--growth-plot", help="write the memory-added-per-doubling PNG here")
    _add_report_arguments(scaling, "tables")
    scaling.set_defaults(func=run_scaling)

    step = sub.add_parser(
        "step",
        help="wall-clock it/s, peak memory and MFU of real training steps",
        description="Times Trainer.step (each variant in its own child process) after warm-up and reports "
        "the median, peak memory, model FLOP utilisation and optionally the largest batch that fits. Each "
        "child gets the resolved config (preset, --config files, overrides) and training's device set-up.",
    )
    add_config_arguments(step, "small-64")  # on CPU keep it small
    step.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="autocast precision of the forward passes",
    )
    step.add_argument("--compile", action="store_true", help="torch.compile the generator (never D)")
    step.add_argument("--batch", type=int, default=None, help="level-1 batch (default: the preset's)")
    step.add_argument("--iters", type=int, default=5, help="timed steps (median reported)")
    step.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    step.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="rounds of child runs, alternating the variants (median over all timed steps)",
    )
    step.add_argument("--device", default="auto", help=DEVICE_HELP)
    step.add_argument(
        "--variants",
        nargs="+",
        default=["preset", "no-subsampling"],
        choices=VARIANTS,
        help="'preset': the config as given; the others: its Table 1 ablations "
        "(default: preset no-subsampling)",
    )
    step.add_argument(
        "--find-max-batch",
        action="store_true",
        help="find the largest batch that fits: doubling until OOM on CUDA; on CPU the largest "
        "power-of-two multiple predicted within --memory-budget-gb, then verified",
    )
    step.add_argument("--max-batch", type=int, default=256, help="cap for --find-max-batch")
    step.add_argument("--threads", type=int, default=0, help="torch threads in the children (0: default)")
    step.add_argument(
        "--matmul-size",
        type=int,
        default=0,
        help="matmul operand size for the peak rate (0: 8192 on CUDA, 2048 on CPU)",
    )
    step.add_argument("--memory-budget-gb", type=float, default=4.0, help="CPU peak-RSS budget (default 4)")
    _add_report_arguments(step, "a summary")
    step.set_defaults(func=run_step)
