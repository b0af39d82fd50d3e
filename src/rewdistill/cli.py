"""The `rewdistill` command line: `rewdistill run` runs the whole pipeline; `rewdistill ablate` compares variants."""
from __future__ import annotations

import argparse
import errno
import logging
import sys
import traceback
from pathlib import Path

from rewdistill.cli_runs import RUN_TOOLS, add_run_tools
from rewdistill.config import Config, ConfigError
from rewdistill.config_files import iter_fields, load_config, shipped_configs


def _run_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "run",
        help="run the whole pipeline (teacher-sample .. evaluate); finished stages are skipped",
        description="Run every stage of data + reward distillation. With no arguments: tiny-arith on the "
        "shipped tiny models, offline. Any config key can be set as --section.key VALUE.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", help="YAML config file (sections as in `run --help`), or the name of a shipped config: "
                   f"{', '.join(shipped_configs())}")
    p.add_argument("--task", help="task name (shortcut for --task.name)")
    p.add_argument("--run-dir", help="where artifacts go (default: runs/<task>-seed<seed>)")
    p.add_argument("--until", metavar="STAGE", help=f"stop after this stage: {', '.join(_stage_names())}; with "
                   "rl.rounds > 1, rl stops after the last round and STAGE@R (e.g. rl@2) after round R")
    p.add_argument("--rounds", help="iterative rounds of RL (shortcut for --rl.rounds)")
    p.add_argument("--shard", metavar="I/N", help="sampling stages: sample only shard I of N (0-based) of the question "
                   "chunks, write it, and stop; run every shard (on any machines sharing the run directory), "
                   "then merge")
    p.add_argument("--merge-shards", action="store_true",
                   help="join the shards of the pending sampling stage (none missing or doubled) and go on")
    p.add_argument("--force", action="store_true",
                   help="reuse a run directory made with another config, rerunning the stages that changed")
    p.add_argument("--push_to_hub", metavar="ORG/NAME", help="after the run, upload the final student and its model "
                   "card to this Hugging Face Hub repo (token from HF_TOKEN; private unless --hub_public)")
    p.add_argument("--hub_public", action="store_true", help="with --push_to_hub: make a new repo public")
    _config_options(p)
    return p


def _ablate_parser(sub) -> argparse.ArgumentParser:
    from rewdistill.ablate import DEFAULT_VARIANTS, VARIANTS

    p = sub.add_parser(
        "ablate",
        help="the paper's comparison over seeds: SFT only, ours (rm) and other reward sources",
        description="Run the pipeline once per seed with the paper's reward model (`rm`), then each other variant "
        "from a copy of the stages it shares; write ablation.json, ablation.md and ablation.png. Tune on "
        "validation (--evaluate.split validation), report on test.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", help="YAML config file or shipped config name, the base of every variant")
    p.add_argument("--task", help="task name (shortcut for --task.name)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (each one full run)")
    p.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, metavar="V",
                   help=f"variants, from: {', '.join(VARIANTS)}")
    p.add_argument("--run-dir", "--out", dest="run_dir",
                   help="where the ablation's runs and summary go, like `run --run-dir` (default: runs/ablate-<task>); "
                   "--out is the same option's older name")
    p.add_argument("--jobs", type=int, default=1, help="seeds run at once as separate processes (CPU threads split)")
    p.add_argument("--budget", type=int, metavar="TOKENS",
                   help="every variant's RL runs until its rollouts hold this many student response tokens (sets "
                   "rl.token_budget, and rl.steps high enough never to stop first), so reward sources compare at "
                   "equal cost")
    _config_options(p)
    return p


def _grade_parser(sub) -> argparse.ArgumentParser:
    from rewdistill.grade import GRADE_TASKS

    p = sub.add_parser(
        "grade",
        help="grade responses written by any tool (JSONL rows with `response` and gold `answer`)",
        description="Extract the final answer of each response with rewdistill's extractors and compare it with "
        "the gold answer; write the rows with `extracted` and `correct` added; print accuracy and unparsable count.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("file", help="JSONL file of rows {response, answer[, options]}")
    p.add_argument("--task", required=True, choices=GRADE_TASKS, help="how to extract and compare answers")
    p.add_argument("--out", help="output JSONL (default: next to the input, suffix .graded.jsonl)")
    p.add_argument("--answer-mode", default="auto", choices=["auto", "strict", "flexible"],
                   help="gsm8k: strict (#### N), flexible (last number), auto (#### N if present, else last number)")
    p.add_argument("--bad-rows", default="fail", choices=["fail", "skip"], help="a bad row: fail, or skip and count")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def cmd_grade(args) -> int:
    from rewdistill.grade import grade_file

    s = grade_file(args.task, Path(args.file), args.out and Path(args.out), args.answer_mode, args.bad_rows)
    skipped = f", {s['bad_rows_skipped']} bad rows skipped" if s["bad_rows_skipped"] else ""
    print(f"{s['task']}: accuracy {s['accuracy']:.2%} ({s['correct']}/{s['rows']}), "
          f"unparsable {s['unparsable']}{skipped}; written: {s['out']}")
    return 0


def _config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    defaults = Config().model_dump()
    group = p.add_argument_group("config options (override the YAML file)")
    for key, desc, default in iter_fields():
        value = defaults
        for part in key.split("."):
            value = value[part]
        value = "null" if default is None else value  # null resolved per task (sft.epochs) shows as null
        group.add_argument(f"--{key}", dest=f"cfg:{key}", metavar="V", default=argparse.SUPPRESS,
                           help=f"{desc} (default: {value})")
    group.add_argument("--log.with", dest="cfg:log.trackers", metavar="V", default=argparse.SUPPRESS,
                       help="same as --log.trackers: tensorboard, wandb, mlflow (comma-separated for several)")


def _stage_names() -> list[str]:
    from rewdistill.stage_list import STAGE_NAMES

    return STAGE_NAMES


def _overrides(args) -> dict[str, str]:
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg:")}
    if args.task:
        overrides["task.name"] = args.task
    if getattr(args, "rounds", None):
        overrides["rl.rounds"] = args.rounds
    return overrides


def cmd_ablate(args) -> int:
    from rewdistill.ablate import format_ablation, run_ablation

    overrides = _overrides(args)
    if args.budget is not None:
        overrides.update({"rl.token_budget": str(args.budget), "rl.steps": "1000000"})
    cfg = load_config(args.config, overrides)  # validate before any work
    out = Path(args.run_dir or f"runs/ablate-{cfg.task.name}")
    summary = run_ablation(args.config, overrides, args.seeds, args.variants, out, args.jobs)
    print("\n" + format_ablation(summary))
    print(f"\nwritten: {out / 'ablation.json'}, {out / 'ablation.md'}, {out / 'ablation.png'}")
    return 0


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: write I/N, e.g. 0/4") from None
    if not 0 <= i < n:
        raise ConfigError(f"--shard {text}: I must be in 0..N-1")
    return i, n


def cmd_run(args) -> int:
    cfg = load_config(args.config, _overrides(args))
    run_dir = Path(args.run_dir or f"runs/{cfg.task.name}-seed{cfg.seed}")

    from rewdistill.pipeline import run_pipeline
    from rewdistill.stage_list import check_until

    check_until(args.until, cfg.rl.rounds)  # a bad --until: one line, exit 2, before anything runs
    from rewdistill.report import format_table

    logging.getLogger("rewdistill").info(f"run directory: {run_dir}")
    run_pipeline(cfg, run_dir, args.until, force=args.force, shard=parse_shard(args.shard), merge=args.merge_shards)
    results = run_dir / "results.json"
    from accelerate import PartialState

    from rewdistill.launch import close_processes

    close_processes()  # before the main process's printing and pushing, which the others need not wait for

    if PartialState().is_main_process and results.exists() and args.until in (None, "evaluate") and not args.shard:
        import json

        res = json.loads(results.read_text())
        print(f"\n{res['task']} (seed {res['seed']}, {res['n_test']} {res['split']} questions)\n")
        print(format_table(res))
        print(f"\nreport: {run_dir / 'report.md'}")
    if args.push_to_hub and PartialState().is_main_process:
        from rewdistill.hub import push_to_hub

        if not results.exists():
            raise ConfigError("--push_to_hub needs a finished run: drop --until / --shard")
        print(f"pushed: {push_to_hub(run_dir, args.push_to_hub, private=not args.hub_public)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `rewdistill` parser with its run, ablate and grade commands."""
    ap = argparse.ArgumentParser(prog="rewdistill", description="Distill not only data but also rewards.")
    sub = ap.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    _ablate_parser(sub)
    _grade_parser(sub)
    add_run_tools(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(message)s")
    if not args.debug:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    from rewdistill.models.load import ModelLoadError
    from rewdistill.pipeline import RunDirError
    from rewdistill.sampling.openai_api import BackendError
    from rewdistill.tasks.rows import DataError

    commands = {"run": cmd_run, "ablate": cmd_ablate, "grade": cmd_grade, **RUN_TOOLS}
    try:
        return commands[args.command](args)
    except OSError as e:
        if args.debug or e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"rewdistill: error: disk full while writing {e.filename or 'a file'}; free some space and rerun the "
              "same command (finished work is kept)", file=sys.stderr)
        return 1
    except (ConfigError, RunDirError) as e:
        if args.debug:
            raise
        print(f"rewdistill: error: {e}", file=sys.stderr)
        return 2
    except (ModelLoadError, DataError, BackendError, RuntimeError, ValueError) as e:
        if args.debug:
            raise
        print(f"rewdistill: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rewdistill: interrupted; rerun the same command to continue", file=sys.stderr)
        return 130


def entry() -> None:
    """The `rewdistill` command (and `python -m rewdistill.cli`): main(), then leave as a launched process must."""
    from rewdistill import launch

    try:
        code = main()
    except BaseException:  # an unexpected error (or --debug): its traceback, then the same way out
        if not launch.in_process_group():
            raise
        traceback.print_exc()
        code = 1
    launch.exit_process(code)


if __name__ == "__main__":
    entry()
