"""The ``condbench`` command: list | analyze | validate | run | score | train | report."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence


def _cmd_list(args: argparse.Namespace) -> int:
    from .policies import GRAMMAR
    from .registry import MODELS, TASKS
    from .suites import builtin_suites

    if args.what in ("models", "all"):
        width = max(len(m.sampler) for m in MODELS.values())
        choices = {m.name: ", ".join(m.samplers) or "-" for m in MODELS.values()}
        names = max(len(c) for c in choices.values())
        print(f"{'model':<18} {'task':<9} {'c dim':>5}  {'default sampler':<{width}}  {'sampler=':<{names}}  checkpoint")
        for m in MODELS.values():
            print(f"{m.name:<18} {m.task:<9} {m.c_dim:>5}  {m.sampler:<{width}}  {choices[m.name]:<{names}}  "
                  f"{m.checkpoint_source}")
    if args.what in ("tasks", "all"):
        print()
        for t in TASKS.values():
            print(f"{t.name:<16} {t.description}")
    if args.what in ("suites", "all"):
        print("\nsuites: " + ", ".join(builtin_suites()))
    if args.what in ("policies", "all"):
        print("\npolicy grammar:\n" + GRAMMAR)
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
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
    print(f"wrote {out / 'analysis.json'} and {out / 'analysis.npz'}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from .suites import load_suite

    suite = load_suite(args.suite)
    print(f"{args.suite}: valid suite {suite.name!r}: task {', '.join(suite.tasks)}, {len(suite.models)} model(s), "
          f"{len(suite.policies)} policies, seed {suite.seed}")
    return 0


def _split(text: Optional[str]) -> Optional[list[str]]:
    return [p.strip() for p in text.split(";") if p.strip()] if text else None


def _cmd_run(args: argparse.Namespace, score_only: bool = False) -> int:
    from .plan import costs, expand, format_plan
    from .reports.html import build_report
    from .runner import RunOptions, run_suite
    from .suites import load_suite

    suite = load_suite(args.suite)
    if args.samples_per_class:
        suite.task_options["samples_per_class"] = args.samples_per_class
    if args.microbatch:
        suite.microbatch = args.microbatch
    filters = dict(tasks=_split(args.tasks), models=_split(args.models), policies=_split(args.policies))
    if getattr(args, "dry_run", False):
        from .registry import load_task

        cells = expand(suite, **filters)
        samples = load_task(cells[0].task, **suite.task_options).num_samples if cells else 0
        print(format_plan(costs(suite, cells, samples)))
        return 0
    out = Path(args.out or f"runs/{suite.name}")
    options = RunOptions(device=args.device, batch_size=args.batch_size,
                         cache_dir=Path(args.cache) if args.cache else None, score_only=score_only, **filters)
    try:
        results = run_suite(suite, out, options)
        if results is not None:  # rank 0
            page = build_report([out], out / "index.html")
            print(f"results: {results}\nreport: {page}")
    except KeyboardInterrupt:
        from .runner import kept_summary

        print(f"\ncondbench {args.command}: interrupted. Nothing finished is lost; "
              f"{kept_summary(out, options.cache_dir)}.\nResume with: {shlex.join(['condbench', *args.argv])}",
              file=sys.stderr)
        return 130
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    if args.task == "audio-shapes":
        from .tasks.audio_shapes_training import ShapesTraining, train_audio_shapes

        train_audio_shapes(args.out or "condbench-audio-shapes",
                           ShapesTraining(**({"steps": args.steps} if args.steps else {}), seed=args.seed))
        return 0
    from .tasks.digits_training import DiTTraining, train_digits

    settings = DiTTraining(steps=args.steps or 10000, seed=args.seed,
                           track_every=args.track_every if args.track else 0)
    train_digits(args.out or "condbench-digits", settings)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .reports.html import build_report

    page = build_report(args.run_dirs, args.out)
    print(f"report: {page} ({page.stat().st_size / 1e6:.1f} MB)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="condbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="models, tasks, suites and the policy grammar")
    p.add_argument("what", nargs="?", default="all", choices=["all", "models", "tasks", "suites", "policies"])
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("validate", help="check a suite (a built-in name or a YAML path) without running it")
    p.add_argument("suite")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("analyze", help="embedding statistics of c over all conditions of a task")
    p.add_argument("--task", help="task whose conditions are analysed (default: the model's task, else digits)")
    p.add_argument("--model", help="adapter name (default: the task's default model)")
    p.add_argument("--ckpt", help="checkpoint file (default: the model's own, downloaded once into the cache)")
    p.add_argument("--model-config", help="JSON overrides of the network size, e.g. for a smaller variant")
    p.add_argument("--step", type=int, default=0, help="sampling step whose timestep is analysed (0 = first)")
    p.add_argument("--sweep-points", type=int, default=20, help="steps sampled along the trajectory")
    p.add_argument("--taus", help="comma-separated thresholds for s(tau)")
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
        p.add_argument("--batch-size", type=int, help="rows per sampler call (default: the suite's)")
        p.add_argument("--microbatch", type=int, help="rows per network call, fixed: samples become bit-identical "
                                                      "for any batch size (enters the cache key)")
        p.add_argument("--device", default="cuda" if _cuda() else "cpu")
        if name == "run":
            p.add_argument("--dry-run", action="store_true", help="print the cells and their cost, run nothing")
            p.set_defaults(func=_cmd_run)
        else:
            p.set_defaults(func=lambda a: _cmd_run(a, score_only=True))

    p = sub.add_parser("train", help="train the networks of a built-in task (digits, audio-shapes)")
    p.add_argument("task", choices=["digits", "audio-shapes"])
    p.add_argument("--out", help="directory for the checkpoints (default condbench-TASK)")
    p.add_argument("--steps", type=int, help="diffusion training steps (the shipped models: digits 10000, "
                                             "audio-shapes 3000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--track", action="store_true", help="record cosine and nPR of c during training")
    p.add_argument("--track-every", type=int, default=250)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("report", help="one self-contained HTML report across run directories and tasks")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("-o", "--out", default="report.html")
    p.set_defaults(func=_cmd_report)
    return parser


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
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
