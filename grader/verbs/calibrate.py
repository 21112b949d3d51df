"""`grader calibrate`: set the rubric's accuracy bounds and time limits from measurements.

Every correct solution of the corpus (and the reference) is graded on every item under
several grading seeds, with the rubric's data and weights, and so are the broken
variants marked `low`. Each accuracy item then gets `upper` a stated margin below the
lowest correct run and `lower` at or above the highest low run; the training item's
`learned_accuracy` (the accuracy on its training images from which a run counts as
learned) goes halfway between that `lower` and the lowest correct run, at least the
margin below the latter. Each item's time limit becomes a stated multiple of its slowest correct
run. The rubric records what it was calibrated on, and a table and a PNG plot show the
distributions with the bounds.
"""
from __future__ import annotations

import datetime
import math
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import yaml

from .. import corpus as corpus_mod
from .. import engine, exercise as exercise_mod, rubric as rubric_mod
from ..errors import KitError
from ..fsutil import atomic_path, write_text_atomic
from ..options import DataOptions, add_data_arguments
from ..paths import default_rubric
from ..cells import prepare

MARGIN = 0.05
"""upper sits this far below the lowest accuracy of a correct run"""
LOW_MARGIN = 0.03
"""lower sits this far above the highest low run (or chance, 0.1): about three standard
deviations of an accuracy near chance measured on 500 held-out images"""
TIME_FACTOR = 10.0
"""an item's time limit is this multiple of its slowest correct run: TensorFlow's CPU
kernels differ by machine, and an eager training loop ran 5.5 times slower on one 2-core
machine (AMD EPYC) than on the one the shipped rubric was calibrated on"""
MIN_TIME_LIMIT = 60.0
"""and never below this many seconds (start-up noise dominates very short items)"""
SEEDS = (11, 22, 33)


@dataclass
class Run:
    solution: str
    seed: int
    kind: str
    """correct or low"""
    scores: dict[str, float] = field(default_factory=dict)
    """item id -> fraction of points"""
    seconds: dict[str, float] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)


def calibration_of(item: rubric_mod.Item, checks) -> exercise_mod.Calibration | None:
    """How calibration sets an item's bounds (None: it has none to set); `checks`: the
    rubric's exercise's registry."""
    calibration = checks[item.check].calibration
    return calibration if calibration and calibration.calibrates(item.params) else None


def measured_accuracy(item: rubric_mod.Item, observation, inputs: engine.GradingInputs,
                      checks) -> float | None:
    """What an item's bounds are set from (the check's Calibration.measure): held-out
    accuracy for accuracy items, the accuracy on the training item's images after its
    run for the training item."""
    calibration = calibration_of(item, checks)
    return calibration.measure(observation, inputs.judge_context(item), item.params) \
        if calibration else None


def unbarred(items: list[rubric_mod.Item], checks) -> list[rubric_mod.Item]:
    """The items as calibration judges them: an item with a bar counts any gain as
    reaching it (the bar is what is being measured), so a correct run loses it only to
    what has no bound (the training item's TensorBoard scalars, logits the VGG front end
    does not explain)."""
    out = []
    for item in items:
        calibration = calibration_of(item, checks)
        out.append(replace(item, params={**item.params, calibration.bar: 0.0})
                   if calibration and calibration.kind == "bar" else item)
    return out


def grade_runs(solutions: dict[str, Path], kind: str, rubric: rubric_mod.Rubric, make_inputs,
               seeds, log=print) -> list[Run]:
    """Grade each solution on every item of `rubric` under each seed; `make_inputs(rubric)`
    gives the grading inputs (Measured.inputs)."""
    checks = rubric.exercise.checks
    runs = []
    for seed in seeds:
        seeded = replace(rubric, heldout_seed=seed)
        inputs = make_inputs(seeded)
        for name, path in solutions.items():
            with tempfile.TemporaryDirectory(prefix="grader-calibrate-") as tmp:
                module = prepare(path, Path(tmp) / "module", rubric.exercise)
                outcomes = engine.collect(module, path.parent, seeded.items, inputs,
                                          Path(tmp) / "run", seeded.exercise, seed=seed).outcomes
                results = engine.judge(unbarred(seeded.items, checks), outcomes, inputs, seeded.exercise)
            run = Run(name, seed, kind)
            for item, result in zip(seeded.items, results):
                run.scores[item.id] = result.score / item.points if item.points else 1.0
                run.seconds[item.id] = result.seconds
                run.messages[item.id] = f"{result.status}: {result.message}"
                outcome = outcomes.get(item.id)
                if calibration_of(item, checks) and isinstance(outcome, engine.Observed):
                    acc = measured_accuracy(item, outcome.observation, inputs, checks)
                    if acc is not None:
                        run.accuracy[item.id] = acc
            log(f"  {kind:7s} {name:28s} seed {seed}: " + ", ".join(
                f"{i}={a:.3f}" for i, a in run.accuracy.items()))
            runs.append(run)
    return runs


@dataclass
class Bounds:
    item: str
    lower: float
    upper: float
    min_correct: float
    max_low: float | None
    slowest: float
    time_limit: float
    check: str = "accuracy"
    calibration: exercise_mod.Calibration | None = None
    """the item's check's: whether the bounds are a range (lower, upper) or one bar
    (`upper`, written to the Calibration's `bar` parameter)"""


def compute(rubric: rubric_mod.Rubric, runs: list[Run], margin: float = MARGIN,
            time_factor: float = TIME_FACTOR) -> tuple[dict[str, Bounds], dict[str, float]]:
    """Accuracy bounds per accuracy item, and a time limit for every item."""
    correct = [r for r in runs if r.kind == "correct"]
    low = [r for r in runs if r.kind == "low"]
    limits = {}
    for item in rubric.items:
        slowest = max((r.seconds.get(item.id, 0.0) for r in correct), default=0.0)
        limits[item.id] = float(max(MIN_TIME_LIMIT, math.ceil(time_factor * slowest / 5) * 5))
    bounds = {}
    for item in rubric.items:
        calibration = calibration_of(item, rubric.exercise.checks)
        if calibration is None:
            continue
        values = [r.accuracy.get(item.id) for r in correct]
        if not values or any(v is None for v in values):
            failed = [f"{r.solution} (seed {r.seed}): {r.messages.get(item.id)}"
                      for r in correct if r.accuracy.get(item.id) is None]
            raise KitError(f"calibration of {item.id}: expected every correct run to report an "
                           f"accuracy, these did not: {'; '.join(failed)[:400]}.")
        min_correct = min(values)
        low_values = [r.accuracy[item.id] for r in low if item.id in r.accuracy]
        max_low = max(low_values) if low_values else None
        # to 0.01, away from the runs (rounded first so 0.55 stays 0.55 in binary floats)
        upper = math.floor(round((min_correct - margin) * 100, 6)) / 100
        floor_low = max(max_low if max_low is not None else 0.1, 0.1)
        what = calibration.what
        lower = math.ceil(round((floor_low + LOW_MARGIN) * 100, 6)) / 100
        if not lower < upper:
            raise KitError(
                f"calibration of {item.id}: the correct runs' {what} (lowest {min_correct:.3f}) "
                f"and the low runs' (highest {max_low if max_low is not None else 0:.3f}) are not "
                f"separated by the margins {margin} and {LOW_MARGIN}; give the item more steps "
                "or images.")
        if calibration.kind == "bar":
            # One bar, not a range: halfway between the low side and the lowest correct run
            # (as far from both as it can be), and never closer than `margin` to the latter.
            # A slow but working program (an extra hidden layer learns 0.60 where correct
            # solutions reach 0.72) keeps the item; an overshooting optimizer (0.31) does not.
            upper = min(upper, math.floor(round((lower + min_correct) / 2 * 100, 6)) / 100)
        bounds[item.id] = Bounds(item.id, lower, upper, min_correct, max_low,
                                 max(r.seconds.get(item.id, 0.0) for r in correct), limits[item.id],
                                 item.check, calibration)
    return bounds, limits


def _ranged(item: rubric_mod.Item, checks) -> bool:
    """Scored between calibrated bounds: losing points there is what the bounds measure."""
    calibration = checks[item.check].calibration
    return bool(calibration and calibration.kind == "range")


def false_fails(rubric: rubric_mod.Rubric, runs: list[Run]) -> list[str]:
    """Correct runs that lost points on an item that is not an accuracy item (the training
    item judged without its calibrated bar, see `unbarred`)."""
    return [f"{r.solution} (seed {r.seed}) lost {item.id}: {r.messages[item.id]}"
            for r in runs if r.kind == "correct" for item in rubric.items
            if not _ranged(item, rubric.exercise.checks) and r.scores.get(item.id, 0) < 1.0]


def update_rubric_data(data: dict, bounds: dict[str, Bounds], limits: dict[str, float],
                       provenance: dict) -> dict:
    """The rubric's YAML data with the new bounds, limits and provenance."""
    data = dict(data)
    items = []
    for raw in data["items"]:
        raw = dict(raw)
        if raw["id"] in limits:
            raw["time_limit"] = limits[raw["id"]]
        if raw["id"] in bounds:
            params = dict(raw.get("params") or {})
            bar = bounds[raw["id"]].calibration.bar
            if bar:
                params[bar] = bounds[raw["id"]].upper
            else:
                params["lower"], params["upper"] = bounds[raw["id"]].lower, bounds[raw["id"]].upper
            raw["params"] = params
        items.append(raw)
    data["items"] = items
    data["calibration"] = provenance
    return data


def table(bounds: dict[str, Bounds], limits: dict[str, float], runs: list[Run]) -> str:
    lines = ["item            lowest correct  highest low  lower  upper  slowest   time limit"]
    for item_id, limit in limits.items():
        slowest = max((r.seconds.get(item_id, 0.0) for r in runs if r.kind == "correct"), default=0)
        b = bounds.get(item_id)
        if b:
            low = "-" if b.max_low is None else f"{b.max_low:.3f}"
            lines.append(f"{item_id:15s} {b.min_correct:14.3f}  {low:>11s}  {b.lower:5.2f}  "
                         f"{b.upper:5.2f}  {slowest:6.1f} s  {limit:6.0f} s")
        else:
            lines.append(f"{item_id:15s} {'':14s}  {'':11s}  {'':5s}  {'':5s}  {slowest:6.1f} s  "
                         f"{limit:6.0f} s")
    return "\n".join(lines)


def plot(bounds: dict[str, Bounds], runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(bounds), 1, figsize=(7, 1.8 * len(bounds) + 0.6), squeeze=False)
    for ax, (item_id, b) in zip(axes[:, 0], bounds.items()):
        for row, kind, colour in ((1, "correct", "tab:green"), (0, "low", "tab:red")):
            values = [r.accuracy[item_id] for r in runs if r.kind == kind and item_id in r.accuracy]
            jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(values))
            ax.scatter(values, row + jitter, s=18, color=colour, alpha=0.8, label=kind)
        ax.axvline(b.lower, color="tab:red", linestyle="--", linewidth=1)
        ax.axvline(b.upper, color="tab:green", linestyle="--", linewidth=1)
        ax.set_yticks([0, 1], ["low", "correct"])
        ax.set_xlim(0, 1.02)
        if b.calibration.kind == "bar":
            title = f"{item_id} (training images): learned from {b.upper:.2f}"
        else:
            title = f"{item_id}: no points at or below {b.lower:.2f}, full points from {b.upper:.2f}"
        ax.set_title(title, fontsize=9)
    axes[-1, 0].set_xlabel("accuracy (held-out images; the training item: its training images)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def run(rubric_path: str | Path | None = None, corpus: str | Path | None = None,
        seeds=SEEDS, options: DataOptions = DataOptions(), margin: float = MARGIN, time_factor: float = TIME_FACTOR, write: bool = True,
        plot_path: str | Path | None = None, solutions: list[str] | None = None,
        log=print) -> tuple[dict[str, Bounds], dict[str, float], list[Run]]:
    rubric_path = Path(rubric_path or default_rubric())
    rubric = rubric_mod.load(rubric_path)
    if rubric.exercise.calibration is None:
        raise KitError(f"{rubric_path}: grader calibrate measures an exercise that says what to "
                       f"grade its corpus on (Exercise.calibration); {rubric.exercise.name} does "
                       "not. Set that rubric's bounds by hand.")
    corpus = Path(corpus or corpus_mod.default_corpus())
    measured = rubric.exercise.calibration(rubric, options)
    correct = corpus_mod.correct_solutions(corpus)
    if solutions:
        unknown = [s for s in solutions if s not in correct]
        if unknown:
            raise KitError(f"--solution {', '.join(unknown)}: not in the corpus; expected one of "
                           f"{', '.join(correct)}.")
        correct = {s: correct[s] for s in solutions}
    low_variants = [v for v in corpus_mod.load_variants(corpus) if v.low]
    log(f"calibrating {rubric_path} on {len(correct)} correct solutions and {len(low_variants)} "
        f"low variants, seeds {', '.join(map(str, seeds))} ({measured.description})")
    with tempfile.TemporaryDirectory(prefix="grader-variants-") as tmp:
        low = {v.name: corpus_mod.write_variant(v, Path(tmp), corpus) for v in low_variants}
        calibrated_items = [i for i in rubric.items if calibration_of(i, rubric.exercise.checks)]
        runs = grade_runs(correct, "correct", rubric, measured.inputs, seeds, log)
        low_rubric = replace(rubric, items=calibrated_items)
        runs += grade_runs(low, "low", low_rubric, measured.inputs, seeds, log)
    problems = false_fails(rubric, runs)
    if problems:
        raise KitError(f"calibration stopped: a correct solution lost points on a check that "
                       f"has no bound to calibrate: {problems[0]}" +
                       (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "") +
                       ". Fix the check or the solution first.")
    bounds, limits = compute(rubric, runs, margin, time_factor)
    from ..modules import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras
    import tensorflow as tf

    provenance = {
        "date": datetime.date.today().isoformat(),
        **measured.provenance,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "seeds": list(seeds),
        "correct_solutions": sorted(correct),
        "low_variants": sorted(low),
        "runs": len(runs),
        "margin": margin,
        "low_margin": LOW_MARGIN,
        "time_factor": time_factor,
        "measured": {b.item: {"lowest_correct": round(b.min_correct, 4),
                              "highest_low": None if b.max_low is None else round(b.max_low, 4)}
                     for b in bounds.values()},
        "slowest_seconds": {item_id: round(max(r.seconds.get(item_id, 0.0) for r in runs
                                               if r.kind == "correct"), 1) for item_id in limits},
    }
    log(table(bounds, limits, runs))
    if plot_path:
        plot(bounds, runs, Path(plot_path))
        log(f"plot: {plot_path}")
    if write:
        raw = yaml.safe_load(rubric_path.read_text(encoding="utf-8"))
        updated = update_rubric_data(raw, bounds, limits, provenance)
        # bounds hold for the data and weights they were measured on: the rubric now names them
        updated.update(measured.sections(rubric_path))
        rubric_mod.parse(updated, str(rubric_path))  # never write a rubric that does not load
        header = [line for line in rubric_path.read_text(encoding="utf-8").splitlines()
                  if line.startswith("#")]
        text = "\n".join(header) + "\n" + yaml.safe_dump(updated, sort_keys=False, width=100)
        write_text_atomic(rubric_path, text)
        log(f"wrote the bounds, time limits and provenance into {rubric_path}")
    return bounds, limits, runs


HELP = ("instructors: grade the corpus of correct solutions and low variants, then write "
        "accuracy bounds and time limits into the rubric")


def add_arguments(parser) -> None:
    parser.add_argument("--rubric", help="rubric YAML to calibrate (default: rubrics/transfer_learning.yaml)")
    parser.add_argument("--corpus", help="corpus folder with correct/ and variants.yaml "
                        "(default: tests/corpus)")
    parser.add_argument("--solution", action="append", metavar="NAME",
                        help="calibrate on these correct solutions only (repeatable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS),
                        help="grading seeds; each correct solution runs once per seed")
    add_data_arguments(parser)
    parser.add_argument("--margin", type=float, default=MARGIN,
                        help="upper bound = lowest correct accuracy minus this")
    parser.add_argument("--time-factor", type=float, default=TIME_FACTOR,
                        help="time limit = this multiple of the slowest correct run")
    parser.add_argument("--plot", metavar="PNG", help="write a plot of the accuracy distributions")
    parser.add_argument("--dry-run", action="store_true", help="print the table, leave the rubric")


def execute(args) -> None:
    run(args.rubric, args.corpus, tuple(args.seeds), DataOptions.from_args(args), args.margin,
        args.time_factor, not args.dry_run, args.plot, args.solution,
        log=lambda line: print(line, file=sys.stderr, flush=True))
