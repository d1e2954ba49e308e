"""`tinylm report`, `bench` and `runs`: what the runs add up to."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tinylm.errors import UsageError
from tinylm.experiments.report import write_report
from tinylm.paths import Paths, results_dir
from tinylm.run_folders import find_runs, reference_dir
from tinylm.speed import run_bench, summary_lines


def cmd_report(args: argparse.Namespace) -> int:
    reference = reference_dir()
    if args.reference or args.update_readme:
        if reference is None:
            raise UsageError("no shipped reference results here (results/reference/runs); run from a checkout of "
                             "tinylm, or drop --reference to report on your own runs")
        readme = Path(args.readme) if args.readme else reference.parent.parent / "README.md"
        paths = write_report(reference, None, reference, readme=readme, figures=not args.no_figures,
                             profile=args.profile, config=args.config)
    else:
        working = results_dir(args.results_dir)
        paths = write_report(working, working, reference, figures=not args.no_figures, profile=args.profile,
                             config=args.config)
    print(f"wrote {paths[1]} ({len(paths)} files, figures under {paths[1].parent / 'figures'})")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    def progress(what: str) -> None:  # one line, overwritten on a terminal; nothing in logs
        if sys.stderr.isatty():
            print(f"  measuring {what} ...".ljust(79)[:79], end="\r", file=sys.stderr, flush=True)

    report, path = run_bench(Paths.of(args.results_dir, args.data_dir, args.mirror), quick=args.quick,
                             only=args.only, precision=args.precision, repeats=args.repeats, device=args.device,
                             time_target=args.time_to_target, profile=args.profile, progress=progress)
    if sys.stderr.isatty():
        print(" " * 79, end="\r", file=sys.stderr, flush=True)
    print("\n".join(summary_lines(report)))
    print(f"wrote {path}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    found = find_runs(results_dir(args.results_dir), reference_dir())
    if not any(r.source == "yours" for r in found):
        print("no runs of yours yet; train one with: tinylm train --quick")
    for r in found:
        tl = r.metrics.test_loglik
        print(f"{r.path.name:<40} {r.source:<10} {r.state:<35} test LL {'-' if tl is None else f'{tl:.4f}'}")
    return 0
