"""`digitpad finetune`: teach a model the pictures in a folder, with MNIST replayed so nothing is forgotten."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from digitpad.cli import _fail, _json, _load


def cmd_finetune(args) -> int:
    from tqdm import tqdm

    from digitpad.core.data import DataError, load_mnist
    from digitpad.core.finetune import FineTuneConfig, FineTuner, FoldRecord, check_samples, read_samples
    from digitpad.core.model_io import ModelFileError, build_metadata, free_path, save_model, shipped_model_path
    from digitpad.core.model_io import user_models_dir
    from digitpad.core.samples import SampleError
    from digitpad.core.train import StepRecord

    try:
        model, _ = _load(args.model)
    except ModelFileError as e:
        return _fail(str(e), 1)
    try:
        samples = read_samples(args.samples)
    except SampleError as e:
        return _fail(f"--samples: {e}", 1)
    for line in samples.skipped:
        print(f"digitpad: skipped {line}", file=sys.stderr)
    if not len(samples):
        return _fail(f"--samples: {args.samples}: no readable pictures of digits "
                     "(expected pictures in folders named 0 to 9)", 1)
    config = FineTuneConfig()
    try:
        check_samples(samples, config.min_per_digit)  # before loading MNIST: says what to add at once
    except SampleError as e:
        return _fail(str(e), 1)
    try:
        mnist = load_mnist(args.data_dir)
    except DataError as e:
        return _fail(str(e), 1)
    tuner = FineTuner(model, samples, mnist, config)

    total = config.steps + tuner.folds * config.steps
    bar = tqdm(total=total, unit="step", disable=args.json, file=sys.stderr, dynamic_ncols=True, desc="fine-tune")
    try:
        for rec in tuner:  # the fine-tune's steps, then one record per cross-validation fold
            if isinstance(rec, StepRecord) and not rec.message:
                bar.update(rec.step - bar.n)
            elif isinstance(rec, FoldRecord):
                bar.set_description_str(f"held-out check {rec.fold}/{rec.folds}")
                bar.update(config.steps * (rec.fold + 1) - bar.n)
    except KeyboardInterrupt:
        return _fail("fine-tune aborted; no model was saved", 130)
    finally:
        bar.close()
    result = tuner.result
    if result.diverged:
        return _fail(f"the fine-tune diverged, no model was saved: {result.message}", 1)

    source = Path(args.model) if args.model else shipped_model_path()
    if args.out:
        out = Path(args.out)
        out = out if out.suffix == ".npz" else out.with_name(out.name + ".npz")
        if out.exists():
            taken, out = out, free_path(out.parent, out.stem)
            print(f"digitpad: {taken} exists; saving as {out} instead", file=sys.stderr)
    else:
        out = free_path(user_models_dir(), f"{source.stem}-finetuned")
    summary = result.to_dict()
    meta = build_metadata(result.model, fine_tuned_from=str(source), samples=len(samples),
                          samples_folder=str(args.samples), finetune_config=config.to_dict(),
                          metrics=summary, command=shlex.join(["digitpad", *args.argv]))
    try:
        path = save_model(out, result.model, meta)
    except (OSError, ModelFileError) as e:
        return _fail(f"--out: cannot save {out}: {e}", 1)
    summary.update(model=str(path), skipped=len(samples.skipped))
    if args.json:
        print(_json(summary))
        return 0
    print(f"your {len(samples)} digits, each read by a model that did not learn it "
          f"({tuner.folds}-fold cross-validation): {result.samples_accuracy_before:.1%} before, "
          f"{result.samples_accuracy_after:.1%} after")
    print(f"MNIST test set: {result.mnist_accuracy_before:.2%} before, {result.mnist_accuracy_after:.2%} after")
    print(f"{result.seconds:.1f} s; saved {path}")
    return 0
