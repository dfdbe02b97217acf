"""The ``condbench`` command: list | analyze | validate | run | score | train | report | tables."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence


def _cmd_list(args: argparse.Namespace) -> int:
    import warnings

    from .policies import GRAMMAR
    from .registry import PLUGIN_ERRORS, PluginWarning, metrics, models, tasks
    from .suites import builtin_suites

    with warnings.catch_warnings():  # said once below, as condbench's own warning lines
        warnings.simplefilter("ignore", PluginWarning)
        model_table, task_table, metric_table = models(), tasks(), metrics()
    for problem in PLUGIN_ERRORS:
        print(f"condbench list: warning: {problem}", file=sys.stderr)
    if args.what in ("models", "all"):
        width = max(len(m.sampler) for m in model_table.values())
        choices = {m.name: ", ".join(m.samplers) or "-" for m in model_table.values()}
        names = max(len(c) for c in choices.values())
        origins = max(len("from"), *(len(m.origin) for m in model_table.values()))
        print(f"{'model':<18} {'task':<9} {'c dim':>5}  {'default sampler':<{width}}  {'sampler=':<{names}}  "
              f"{'from':<{origins}}  checkpoint")
        for m in model_table.values():
            print(f"{m.name:<18} {m.task:<9} {m.c_dim:>5}  {m.sampler:<{width}}  {choices[m.name]:<{names}}  "
                  f"{m.origin:<{origins}}  {m.checkpoint_source}")
    if args.what in ("tasks", "all"):
        print()
        for t in task_table.values():
            print(f"{t.name:<16} {t.description}" + ("" if t.origin == "built-in" else f" (from {t.origin})"))
    if args.what in ("metrics", "all") and metric_table:
        print("\nmetrics from plugins:")
        for m in metric_table.values():
            print(f"{m.name:<16} {m.description} (from {m.origin})")
    if args.what in ("suites", "all"):
        print("\nsuites: " + ", ".join(builtin_suites()))
    if args.what in ("policies", "all"):
        print("\npolicy grammar:\n" + GRAMMAR)
    return 0


def _cmd_analyze_blocks(args: argparse.Namespace) -> int:
    from .blocks import BLOCKS_FILE, block_diversity
    from .policies import parse_policy
    from .registry import load_adapter, load_task, model_entry
    from .storage import atomic_write, ensure_folder

    task = load_task(args.task or (model_entry(args.model).task if args.model else "digits"))
    model_config = json.loads(args.model_config) if args.model_config else {}
    adapter = load_adapter(args.model or task.default_model, ckpt=args.ckpt, device=args.device,
                           **({"model_config": model_config} if model_config else {}))
    last = adapter.sampler_steps - 1
    steps = [int(s) for s in args.block_steps.split(",")] if args.block_steps else [0, last // 2, last]
    if any(not 0 <= s <= last for s in steps):
        raise ValueError(f"--block-steps must be sampling steps 0..{last}, got {args.block_steps}")
    policies = [parse_policy(p) for p in _split(args.policies) or ["baseline"]]
    result = block_diversity(adapter, task.conditions()[:args.samples], policies, steps)
    out = ensure_folder(args.out, "output folder")
    atomic_write(out / BLOCKS_FILE, json.dumps(result, indent=1))
    for key, per_step in result["policies"].items():
        print(f"{key:<28} " + "  ".join(f"step {s}: CKA {m['mean_cka']:.3f} cos {m['mean_cosine']:.3f}"
                                         for s, m in per_step.items()))
    print(f"wrote {out / BLOCKS_FILE}")
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    if args.blocks:
        return _cmd_analyze_blocks(args)
    from .analysis import analyze
    from .registry import load_adapter, load_task, model_entry
    from .storage import atomic_save_npz, atomic_write, ensure_folder

    task = load_task(args.task or (model_entry(args.model).task if args.model else "digits"))
    model_config = json.loads(args.model_config) if args.model_config else {}
    # only the embedders are read: c needs nothing else, and a 3 GB network is never materialised
    adapter = load_adapter(args.model or task.default_model, ckpt=args.ckpt, device=args.device,
                           embedders_only=True, **({"model_config": model_config} if model_config else {}))
    taus = [float(t) for t in args.taus.split(",")] if args.taus else None
    summary, arrays = analyze(adapter, task.analysis_conditions(), step=args.step, sweep_points=args.sweep_points,
                              **({"taus": taus} if taus else {}))
    out = ensure_folder(args.out, "output folder")
    atomic_write(out / "analysis.json", json.dumps(summary, indent=1))
    atomic_save_npz(out / "analysis.npz", arrays, compressed=True)
    c = summary["c"]
    print(f"{adapter.name}: d={c['dim']} PR={c['pr']['mean']:.2f} nPR={c['npr']['mean']:.2%} "
          f"mean cosine={c['cosine']['mean']:.4f} (cond only: {summary['cond_only']['cosine']['mean']:.4f}, "
          f"nPR {summary['cond_only']['npr']['mean']:.2%})")
    print("s(tau), the fraction of c's dimensions below tau (what tail:TAU removes at this step), mean over conditions: "
          + ", ".join(f"{tau} {share:.1%}" for tau, share in c["sparsity"].items()))
    print(f"wrote {out / 'analysis.json'} and {out / 'analysis.npz'}")
    return 0


def _cmd_check_adapter(args: argparse.Namespace) -> int:
    from .contract import RULES, check_adapter_contract
    from .registry import model_entry

    entry = model_entry(args.model)
    if entry.contract_case is None:
        raise ValueError(f"{entry.name} ({entry.origin}) gives no contract case: its registry entry needs a "
                         "contract_case(ckpt, model_config) (see condbench.contract)")
    model_config = json.loads(args.model_config) if args.model_config else None
    case = entry.contract_case(args.ckpt, **({"model_config": model_config} if model_config else {}))
    results = check_adapter_contract(case)
    for result in results:
        print(result.line())
    broken = [r.rule for r in results if r.passed is False]
    checked = sum(r.passed is not None for r in results)
    print(f"{entry.name}: " + (f"breaks rule(s) {', '.join(broken)}" if broken else
                               f"honours the adapter contract ({checked} of {len(RULES)} rules checked)"))
    return 1 if broken else 0


def _cmd_export_pruned(args: argparse.Namespace) -> int:
    from .pruning import export_pruned

    model_config = json.loads(args.model_config) if args.model_config else None
    s = export_pruned(args.model, args.policy, args.out, ckpt=args.ckpt, model_config=model_config)
    print(f"{s['model']} {s['policy']}: dropped {s['dims_dropped']}/{s['c_dim']} dimensions of c from {s['readers']} "
          f"adaLN Linear layers (the policy removes {s['dims_removed_per_step_mean']:.1f} per step on average"
          f"{'' if s['exact_for_policy'] else '; a static checkpoint drops only those removed at every step'})")
    print(f"parameters {s['params']['before']:,} -> {s['params']['after']:,}; bytes {s['bytes']['before']:,} -> "
          f"{s['bytes']['after']:,}; FLOPs saved per network evaluation {s['flops']['saved_per_evaluation']:,}")
    print(f"wrote {Path(args.out) / 'model.safetensors'}, pruned.json, savings.json")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from .suites import load_suite

    suite = load_suite(args.suite)
    print(f"{args.suite}: valid suite {suite.name!r}: task {', '.join(suite.tasks)}, {len(suite.models)} model(s), "
          f"{len(suite.policies)} policies, seed {suite.seed}")
    return 0


def _split(text: Optional[str]) -> Optional[list[str]]:
    return [p.strip() for p in text.split(";") if p.strip()] if text else None


def _check_files_first(suite, filters: dict) -> None:
    """Before torch is imported: stop at once, with every missing file named, when the run could not start (the
    runner checks again, logs the models it skips, and loads the files). Only for tasks whose registry entry
    checks its files without being built; the others are built and checked by the runner alone."""
    from .plan import expand
    from .preflight import check_inputs, restrict
    from .registry import task_entry

    cells = expand(suite, **filters)
    if cells and all(task_entry(c.task).inputs is not None for c in cells):  # no cell: the runner says so
        check_inputs(restrict(suite, cells), log=lambda _: None)


def _cmd_run(args: argparse.Namespace, score_only: bool = False) -> int:
    from .plan import costs, expand, format_plan, read_throughput
    from .suites import load_suite

    suite = load_suite(args.suite)
    if args.samples_per_class:
        suite.task_options["samples_per_class"] = args.samples_per_class
    if args.microbatch:
        suite.microbatch = args.microbatch
    if args.precision:
        suite.precision = args.precision
    if args.compile:
        suite.compile = True
    filters = dict(tasks=_split(args.tasks), models=_split(args.models), policies=_split(args.policies))
    if getattr(args, "dry_run", False):
        from .preflight import checkpoints_not_on_disk, load_tasks

        cells = expand(suite, **filters)
        samples = load_tasks(suite)[cells[0].task].num_samples if cells else 0
        throughput = read_throughput(args.throughput, suite.precision, suite.compile) if args.throughput else None
        print(format_plan(costs(suite, cells, samples), throughput))
        for line in checkpoints_not_on_disk(suite, list(dict.fromkeys(c.model for c in cells))):
            print(f"warning: no checkpoint on disk for {line}", file=sys.stderr)
        return 0
    out = Path(args.out or f"runs/{suite.name}")
    cache_dir = Path(args.cache) if args.cache else None
    try:  # from here on a Ctrl-C says what was kept, even while torch is still being imported
        _check_files_first(suite, filters)
        from .reports.html import build_report
        from .runner import RunOptions, run_suite

        options = RunOptions(device=args.device or ("cuda" if _cuda() else "cpu"), batch_size=args.batch_size,
                             together=args.together, overlap=False if args.no_overlap else None,
                             cache_dir=cache_dir, score_only=score_only, **filters)
        results = run_suite(suite, out, options)
        if results is not None:  # rank 0
            page = build_report([out], out / "index.html")
            print(f"results: {results}\nreport: {page}")
    except KeyboardInterrupt:
        print(f"\ncondbench {args.command}: interrupted. {_kept_text(out, cache_dir)}.\n"
              f"Resume with: {shlex.join(['condbench', *args.argv])}", file=sys.stderr)
        return 130
    return 0


def _kept_text(out: Path, cache_dir: Optional[Path]) -> str:
    """What an interrupted run kept. Without the runner imported, no work began; importing it now would import
    torch again after its interrupted import, which crashes the interpreter."""
    runner = sys.modules.get(f"{__package__}.runner")
    if runner is None:
        return "It stopped before any work began; nothing was changed"
    return f"Nothing finished is lost; {runner.kept_summary(out, cache_dir)}"


def _cmd_train(args: argparse.Namespace) -> int:
    out = args.out or f"condbench-{args.task}"
    if args.task == "pose-digits":
        from .tasks.pose_digits_training import PoseDigitsTraining, write_pose_digits

        write_pose_digits(out, PoseDigitsTraining(seed=args.seed, **({"steps": args.steps} if args.steps else {})))
        return 0
    if args.task == "audio-shapes":
        from .tasks.audio_shapes_training import ShapesTraining, train_audio_shapes

        train_audio_shapes(out, ShapesTraining(**({"steps": args.steps} if args.steps else {}), seed=args.seed))
        return 0
    from .tasks.digits_training import CLASSIFIER_EPOCHS, DiTTraining, train_digits

    steps = args.steps or 10000
    settings = DiTTraining(steps=steps, seed=args.seed, track_every=args.track_every if args.track else 0)
    print(f"condbench train digits: first the digits classifier ({CLASSIFIER_EPOCHS} epochs; --steps does not change "
          f"it), then the DiT for --steps {steps} steps.")
    paths = train_digits(out, settings)
    dit, classifier = (shlex.quote(str(paths[k])) for k in ("dit", "classifier"))
    print(f"Use them: in a suite, model_options: {{dit-digits: {{ckpt: {dit}}}}} and task_options: "
          f"{{classifier: {classifier}}}; or `condbench analyze --model dit-digits --ckpt {dit}`.")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .reports.html import build_report

    page = build_report(args.run_dirs, args.out or Path(args.run_dirs[0]) / "report.html")
    print(f"report: {page} ({page.stat().st_size / 1e6:.1f} MB)")
    return 0


def _cmd_tables(args: argparse.Namespace) -> int:
    from .reports.paper_tables import write_tables

    written = write_tables(args.run_dirs, args.format, args.out or Path(args.run_dirs[0]) / "tables")
    print(f"tables ({args.format}): " + ", ".join(str(path) for path in written))
    return 0


class VersionAction(argparse.Action):
    """``condbench --version``: the package version and the git commit of a checkout (looked up only when asked)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from . import __version__
        from .provenance import git_revision

        git = git_revision()
        where = (f"git {git['commit'][:12]}{' with uncommitted changes' if git['dirty'] else ''}" if git
                 else "not a git checkout")
        print(f"condbench {__version__} ({where})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="condbench", description=__doc__)
    parser.add_argument("--version", action=VersionAction, help="the version and, in a git checkout, the commit")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="models, tasks, suites and the policy grammar (installed plugins are imported to "
                                    "be listed; the built-ins import no torch)")
    p.add_argument("what", nargs="?", default="all", choices=["all", "models", "tasks", "metrics", "suites", "policies"])
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("validate", help="check a suite (a built-in name or a YAML path) without running it")
    p.add_argument("suite")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("check-adapter", help="check that a model's adapter honours the contract condbench's numbers "
                                            "rely on (its tiny configuration, or --ckpt)")
    p.add_argument("model")
    p.add_argument("--ckpt", help="checkpoint to check (default: the entry's tiny configuration with random weights)")
    p.add_argument("--model-config", help="JSON overrides of the network size for --ckpt")
    p.set_defaults(func=_cmd_check_adapter)

    p = sub.add_parser("export-pruned", help="a smaller checkpoint without the adaLN input columns a mask=fixed "
                                            "policy removes at every step, and its savings (params, bytes, FLOPs)")
    p.add_argument("model")
    p.add_argument("--policy", required=True, help="a mask=fixed policy, e.g. tail:0.1,mask=fixed")
    p.add_argument("--ckpt", help="checkpoint (default: the model's own)")
    p.add_argument("--model-config", help="JSON overrides of the network size")
    p.add_argument("-o", "--out", required=True, help="output folder (put it under a run directory, as "
                                                     "RUN_DIR/pruned/NAME, for the report to show the savings)")
    p.set_defaults(func=_cmd_export_pruned)

    p = sub.add_parser("analyze", help="embedding statistics of c over all conditions of a task")
    p.add_argument("--task", help="task whose conditions are analysed (default: the model's task, else digits)")
    p.add_argument("--model", help="adapter name (default: the task's default model)")
    p.add_argument("--ckpt", help="checkpoint file (default: the model's own, downloaded once into the cache)")
    p.add_argument("--model-config", help="JSON overrides of the network size, e.g. for a smaller variant")
    p.add_argument("--step", type=int, default=0, help="sampling step whose timestep is analysed (0 = first)")
    p.add_argument("--sweep-points", type=int, default=20, help="steps sampled along the trajectory")
    p.add_argument("--taus", help="comma-separated thresholds for s(tau)")
    p.add_argument("--blocks", action="store_true", help="block diversity instead: linear CKA and mean token cosine "
                                                         "between every pair of block outputs (blocks.json)")
    p.add_argument("--block-steps", help="with --blocks: comma-separated sampling steps (default: first, middle, last)")
    p.add_argument("--policies", help="with --blocks: policy specs separated by ';' (default: baseline)")
    p.add_argument("--samples", type=int, default=20, help="with --blocks: samples (the task's first conditions)")
    p.add_argument("--device", default="cpu")
    p.add_argument("-o", "--out", default="analysis")
    p.set_defaults(func=_cmd_analyze)

    for name, helptext in (("run", "run a suite (a built-in name or a YAML path); resumes from its cache"),
                           ("score", "recompute the metrics of a suite from its cache, without sampling")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("suite")
        p.add_argument("-o", "--out", help="run directory (default runs/SUITE)")
        p.add_argument("--cache", help="shard cache directory (default RUN_DIR/cache); runs may share one")
        p.add_argument("--tasks", help="only these tasks, separated by ';'")
        p.add_argument("--models", help="only these models, separated by ';'")
        p.add_argument("--policies", help="only these policy specs, separated by ';'")
        p.add_argument("--samples-per-class", type=int)
        p.add_argument("--batch-size", type=int, help="samples per sampler call and policy (default: the suite's)")
        p.add_argument("--together", type=_together,
                       help="policies of a model sampled in one sampler call: 'all' or a count (default: the "
                            "suite's, else 1); the same numbers, a larger batch for the GPU")
        p.add_argument("--no-overlap", action="store_true",
                       help="decode, extract features and score after sampling instead of beside the next batch or "
                            "cell (CUDA)")
        p.add_argument("--microbatch", type=int, help="rows per network call, fixed: samples become bit-identical "
                                                      "for any batch size (enters the cache key)")
        p.add_argument("--precision", choices=["fp32", "tf32", "bf16", "official"],
                       help="the denoiser's arithmetic (default: the suite's, else fp32; enters the cache key)")
        p.add_argument("--compile", action="store_true", help="torch.compile the denoiser (enters the cache key)")
        p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
        if name == "run":
            p.add_argument("--dry-run", action="store_true", help="print the cells and their cost, run nothing")
            p.add_argument("--throughput", help="with --dry-run: a benchmarks/gpu_sampling.py JSON; prints each cell's "
                                                "projected sampling time at its measured rate")
            p.set_defaults(func=_cmd_run)
        else:
            p.set_defaults(func=lambda a: _cmd_run(a, score_only=True))

    p = sub.add_parser("train", help="train the networks of a built-in task: digits (DiT + CNN), pose-digits (tiny "
                                     "X-MDPT), audio-shapes (tiny MDSGen + audio CNN)")
    p.add_argument("task", choices=["digits", "pose-digits", "audio-shapes"])
    p.add_argument("--out", help="directory for the checkpoints (default condbench-TASK)")
    p.add_argument("--steps", type=int, help="diffusion training steps (the shipped models: digits 10000, "
                                             "pose-digits 3000, audio-shapes 3000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--track", action="store_true", help="record cosine and nPR of c during training")
    p.add_argument("--track-every", type=int, default=250)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("report", help="one self-contained HTML report across run directories and tasks")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("-o", "--out", help="the page to write (default: report.html in the first run directory)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("tables", help="the report's Table 1 (statistics of c) and Table 2 (policies) of each task as "
                                      "LaTeX, CSV or Markdown files, with the report's numbers")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--format", choices=["latex", "csv", "markdown"], default="latex",
                   help="latex: one .tex per table (booktabs, compiles on its own); csv: table1.csv and table2.csv, "
                        "one row per (task, model, policy, metric); markdown: one .md per table")
    p.add_argument("-o", "--out", help="folder for the files (default: tables/ in the first run directory)")
    p.set_defaults(func=_cmd_tables)
    return parser


def _together(value: str) -> int | str:
    """``--together``: 'all' or a positive count."""
    if value == "all":
        return value
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected 'all' or a positive number of policies, got {value!r}")
    return int(value)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except KeyboardInterrupt:  # a command without its own account of what an interruption keeps
        print(f"\ncondbench {args.command}: interrupted.", file=sys.stderr)
        return 130
    except (KeyError, ValueError, FileNotFoundError, RuntimeError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        print(f"condbench {args.command}: error: {message}", file=sys.stderr)
        return 2
    except OSError as error:  # the file system: what failed and where, in one line
        where = f": {error.filename}" if error.filename else ""
        print(f"condbench {args.command}: error: {error.strerror or error}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
