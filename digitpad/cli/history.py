"""`digitpad runs` and `digitpad experiment`: the run history in the terminal, and the lessons as runs."""

from __future__ import annotations

import sys

from digitpad.cli import _fail, _json, _number


def _run_row(run) -> list[str]:
    c = run.config
    acc = run.info.get("test_accuracy")
    secs = run.info.get("seconds")
    return [run.name, str(run.info.get("started") or "")[:16].replace("T", " "), str(c.get("activation", "")),
            "-".join(str(h) for h in run.info.get("layer_sizes") or []), str(c.get("optimizer", "")),
            f"{c.get('lr', 0):g}", str(run.info.get("epochs_done", "")),
            "" if acc is None else f"{acc:.2%}", "" if secs is None else f"{secs:.1f} s", run.status,
            "kept" if run.info.get("kept") else ""]


def cmd_runs(args) -> int:
    from digitpad.core.runs import find_run, list_runs, load_curves, delete_run, rename_run

    action = getattr(args, "runs_command", None)
    if action is None:
        runs, problems = list_runs()
        for problem in problems:
            print(f"digitpad: skipped {problem}", file=sys.stderr)
        if args.json:
            print(_json([r.summary() for r in runs]))
            return 0
        if not runs:
            print("no training runs recorded yet")
            return 0
        head = ["name", "started", "activation", "layers", "optimizer", "lr", "epochs", "test acc", "time",
                "status", ""]
        rows = [head] + [_run_row(r) for r in runs]
        widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        return 0
    try:
        run = find_run(args.name)
    except KeyError as e:
        return _fail(e.args[0], 1)
    if action == "delete":
        try:
            delete_run(run)
        except (ValueError, OSError) as e:
            return _fail(str(e), 1)
        print(f"deleted run {run.name} ({run.id})")
        return 0
    if action == "rename":
        try:
            run = rename_run(run, args.new_name)
        except (ValueError, OSError) as e:
            return _fail(str(e), 1)
        print(f"renamed {run.id} to {run.name}")
        return 0
    curves = load_curves(run)
    out = run.summary()
    out["grad_ratio_first_last"] = _number(curves.grad_ratio_first_last())
    out["dead_fraction"] = [_number(d) for d in curves.final_dead()]
    out["epochs"] = [{k: _number(float(v[i])) for k, v in curves.epochs.items()}
                     for i in range(len(curves.epochs.get("epoch", [])))]
    out["events"] = [{"step": s, "t": t, "text": text} for s, t, text in curves.events]
    if getattr(args, "json", False):
        print(_json(out))
        return 0
    print(f"{run.name}  ({run.id}, {run.info.get('source')})")
    for label, value in zip(["started", "activation", "layers", "optimizer", "lr", "epochs", "test accuracy", "time",
                             "status"], _run_row(run)[1:10]):
        print(f"  {label:14} {value}")
    if run.info.get("model"):
        print(f"  {'model':14} {run.info['model']}")
    if run.info.get("message"):
        print(f"  {'message':14} {run.info['message']}")
    if out["grad_ratio_first_last"] is not None:
        print(f"  first layer's gradient / output layer's (median, first 200 steps): {out['grad_ratio_first_last']:.3g}")
    if out["dead_fraction"]:
        print("  dead or saturated at the end: " + ", ".join(f"layer {i + 1} {d:.0%}"
                                                          for i, d in enumerate(curves.final_dead())))
    for e in out["epochs"]:
        print(f"  epoch {int(e['epoch'])}: train loss {e['train_loss'] if e['train_loss'] is not None else float('nan'):.4f}"
              f", validation accuracy {e['val_acc'] if e['val_acc'] is not None else float('nan'):.2%}")
    return 0


def cmd_experiment(args) -> int:
    from tqdm import tqdm

    from digitpad.core.data import DataError, load_mnist
    from digitpad.core.experiments import get_experiment, run_experiment
    from digitpad.core.train import StepRecord

    experiment = get_experiment(args.name)
    try:
        mnist = load_mnist(args.data_dir)
    except DataError as e:
        return _fail(str(e), 1)
    bar = tqdm(total=len(experiment.arms), unit="arm", disable=args.quiet or args.json, file=sys.stderr,
               dynamic_ncols=True, desc=experiment.name)

    def on_arm(i, arm):
        bar.update(i - bar.n)
        bar.set_postfix_str(arm.name)

    def on_record(rec):
        if isinstance(rec, StepRecord) and rec.step % 20 == 0:
            bar.set_postfix_str(f"step {rec.step}/{rec.total_steps} loss {rec.loss:.3f}", refresh=True)

    try:
        results, finding = run_experiment(args.name, mnist, on_arm=on_arm, on_record=on_record)
    except KeyboardInterrupt:
        return _fail("experiment interrupted; the arms that finished are in the run history", 130)
    finally:
        bar.update(len(experiment.arms) - bar.n)
        bar.close()
    if args.json:
        print(_json({"experiment": args.name, "arms": [r.to_dict() for r in results], "conclusion": finding}))
        return 0
    print(experiment.title)
    for r in results:
        d = r.to_dict()
        extra = []
        if d["grad_ratio_first_last"] is not None:
            extra.append(f"first/last gradient {d['grad_ratio_first_last']:.3g}")
        if d["dead_fraction"]:
            extra.append("dead " + "/".join(f"{x:.0%}" for x in r.dead_fraction))
        print(f"  {r.arm.name:14} test accuracy {r.test_accuracy:.2%}  {r.seconds:.1f} s  " + "  ".join(extra))
    print(finding)
    print("compare them in the app (Runs page) or with `digitpad runs`")
    return 0
