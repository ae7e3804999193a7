"""The `digitpad` command: the desktop app, and the same work in the terminal.

This module owns the argument parser, what every command shares (strict JSON, one-line
errors, opening a model) and the short commands (gui, download, eval, predict); the longer
ones live beside it: ``train`` (train.py), ``finetune`` (finetune.py), ``runs`` and
``experiment`` (history.py). ``digitpad`` alone starts the app. Heavy modules (NumPy, Qt)
are imported inside the commands so ``digitpad --help`` and start-up stay quick.
"""

from __future__ import annotations

import argparse
import json
import math
import numbers
import os
import sys
from pathlib import Path


def _hidden(text: str) -> tuple[int, ...]:
    from digitpad.core.train import parse_hidden

    try:
        return parse_hidden(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from digitpad import __version__
    # the names train accepts are core's own tables (this imports NumPy, about 0.1 s)
    from digitpad.core.functional import HIDDEN_ACTIVATIONS
    from digitpad.core.optim import OPTIMIZERS, SCHEDULES
    from digitpad.core.train import PRESETS

    parser = argparse.ArgumentParser(
        prog="digitpad",
        description="Draw a digit and watch a NumPy neural network read it; train and evaluate it here too.",
    )
    parser.add_argument("--version", action="version", version=f"digitpad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("gui", help="start the desktop app (the default)")
    p.add_argument("--model", metavar="PATH", help="model file to open (default: the last one used, else the shipped one)")

    p = sub.add_parser("download", help="download MNIST (about 11 MB) and verify it")
    p.add_argument("--data-dir", metavar="DIR", help="where to put it (default: your data folder)")

    p = sub.add_parser("train", help="train a network on MNIST and save it")
    p.add_argument("--data-dir", metavar="DIR", help="folder with the MNIST files")
    p.add_argument("--preset", choices=list(PRESETS), default="quick",
                   help="starting settings; the options below change them (default: quick)")
    p.add_argument("--hidden", type=_hidden, metavar="SIZES",
                   help="hidden layer sizes, e.g. 256,128 (none: no hidden layer)")
    p.add_argument("--activation", choices=list(HIDDEN_ACTIVATIONS))
    p.add_argument("--optimizer", choices=list(OPTIMIZERS))
    p.add_argument("--lr", type=float, metavar="RATE", help="peak learning rate")
    p.add_argument("--schedule", choices=list(SCHEDULES))
    p.add_argument("--batch-size", type=_positive_int, metavar="N")
    p.add_argument("--epochs", type=_positive_int, metavar="N")
    p.add_argument("--weight-decay", type=float, metavar="L2")
    p.add_argument("--dropout", type=float, metavar="P", help="dropout on hidden layers, 0 to <1")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="distort training digits at random (affine + elastic)")
    p.add_argument("--limit", type=_positive_int, metavar="N", help="use only N training digits")
    p.add_argument("--seed", type=int, metavar="N")
    p.add_argument("--threads", type=int, metavar="N",
                   help="matrix-product threads; 0 (default) picks by timing, N fixes it for repeatable runs")
    p.add_argument("--out", metavar="PATH", help="where to save the model (default: your models folder)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("eval", help="test accuracy of a model on the MNIST test set")
    p.add_argument("--model", metavar="PATH", help="model file (default: the shipped model)")
    p.add_argument("--data-dir", metavar="DIR", help="folder with the MNIST files")
    p.add_argument("--json", action="store_true",
                   help="print accuracy (with its 95%% interval), per-class accuracy, confusion and calibration as JSON")
    p.add_argument("--mistakes", metavar="DIR",
                   help="write the misread test digits as PNG files named with index, label, answer and confidence")
    p.add_argument("--temperature", type=float, metavar="T",
                   help="softmax temperature for the probabilities (default: the model's own, else 1)")
    p.add_argument("--fit-temperature", action="store_true",
                   help="also fit a temperature on the model's validation split and report the calibration with it")

    p = sub.add_parser("predict", help="read the digit in image files (PNG, JPEG, BMP, …)")
    p.add_argument("--model", metavar="PATH", help="model file (default: the shipped model)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("images", nargs="+", metavar="IMAGE")

    p = sub.add_parser("finetune", help="teach a model your handwriting: fine-tune it on your own digits")
    p.add_argument("--samples", metavar="DIR", required=True,
                   help="your digits: pictures in folders named 0 to 9 (DIR/7/*.png, as ImageFolder)")
    p.add_argument("--model", metavar="PATH", help="model to start from (default: the shipped model)")
    p.add_argument("--out", metavar="PATH",
                   help="where to save the fine-tuned model (default: your models folder); never overwritten")
    p.add_argument("--data-dir", metavar="DIR", help="folder with the MNIST files (replayed so nothing is forgotten)")
    p.add_argument("--json", action="store_true",
                   help="print the samples, seconds and accuracies before and after as JSON")
    p = sub.add_parser("runs", help="list, show and delete recorded training runs")
    p.add_argument("--json", action="store_true", help="print the runs as a JSON list")
    runs_sub = p.add_subparsers(dest="runs_command", metavar="ACTION")
    q = runs_sub.add_parser("show", help="one run's settings, result and curves")
    q.add_argument("name", metavar="NAME", help="the run's name or id")
    q.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print it as JSON")
    q = runs_sub.add_parser("delete", help="delete a run from the history")
    q.add_argument("name", metavar="NAME", help="the run's name or id")
    q = runs_sub.add_parser("rename", help="give a run a new name")
    q.add_argument("name", metavar="NAME", help="the run's name or id")
    q.add_argument("new_name", metavar="NEW", help="its new name")

    from digitpad.core.experiments import EXPERIMENTS

    p = sub.add_parser("experiment", help="run one of the lessons as side-by-side training runs",
                       description="\n".join(f"{e.name}: {e.question}" for e in EXPERIMENTS.values()),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=list(EXPERIMENTS), metavar="NAME",
                   help=f"one of {', '.join(EXPERIMENTS)}")
    p.add_argument("--data-dir", metavar="DIR", help="folder with the MNIST files")
    p.add_argument("--json", action="store_true", help="print the arms and the finding as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _number(x: float) -> float | None:
    """``x``, or None where it is NaN or infinite (JSON has no NaN)."""
    return x if math.isfinite(x) else None


def _strict(value):
    """``value`` as plain JSON types, with every NaN or infinite number (NumPy's too) as None."""
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    return _number(float(value))


def _json(summary) -> str:
    """One line of strict JSON: ``null`` where a number is NaN or infinite, never ``NaN``."""
    return json.dumps(_strict(summary), allow_nan=False)


def _fail(message: str, code: int = 2) -> int:
    print(f"digitpad: {message}", file=sys.stderr)
    return code


def _note(message: str) -> None:
    print(f"digitpad: note: {message}", file=sys.stderr)


def _load(path):
    """The model to read with (``model_io.open_model``), its notes said on stderr."""
    from digitpad.core.model_io import open_model

    notes = []
    model, meta = open_model(path or None, notes)
    for note in notes:
        _note(note)
    return model, meta


def cmd_gui(args) -> int:
    from digitpad.qt.app import run

    return run(model_path=getattr(args, "model", None))


class _TqdmProgress:
    """A ``progress`` callable for :func:`digitpad.core.download.download_mnist` drawing one tqdm bar per file."""

    def __init__(self, **tqdm_kwargs):
        self._kwargs = tqdm_kwargs
        self._bar = None
        self._name = None

    def __call__(self, name: str, done: int, total: int | None) -> None:
        from tqdm import tqdm

        if name != self._name or self._bar is None:
            self.close()
            self._name = name
            options = dict(unit="B", unit_scale=True, unit_divisor=1024, desc=f"{name}.gz")
            options.update(self._kwargs)
            self._bar = tqdm(total=total, **options)
        elif done < self._bar.n:  # retried on the next mirror
            self._bar.reset(total=total)
        self._bar.update(done - self._bar.n)
        if total is not None and done >= total:
            self.close()

    def close(self) -> None:
        """Close the current bar, if any."""
        if self._bar is not None:
            self._bar.close()
        self._bar = None


def tqdm_progress(**tqdm_kwargs) -> _TqdmProgress:
    """A progress callable for :func:`digitpad.core.download.download_mnist` that draws tqdm bars.

    Parameters
    ----------
    **tqdm_kwargs
        Passed to each ``tqdm`` bar (for instance ``file=sys.stderr`` or ``disable=True``).

    Returns
    -------
    callable
        ``progress(name, done, total)``, with a ``close()`` method to call when the
        download ends early (a bar closes by itself when its file is complete).
    """
    return _TqdmProgress(**tqdm_kwargs)


class _Terminated(Exception):
    """SIGTERM arrived: unwound like Ctrl-C, so temporary files are removed on the way out."""


def _raise_terminated(signum, frame):
    raise _Terminated


def cmd_download(args) -> int:
    import signal

    from digitpad.core.download import DownloadError, download_mnist

    progress = tqdm_progress()
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        dest = download_mnist(args.data_dir, progress=progress)
    except DownloadError as e:
        return _fail(str(e), 1)
    except KeyboardInterrupt:
        return _fail("download interrupted; nothing half-written was kept", 130)
    except _Terminated:
        return _fail("download stopped; nothing half-written was kept", 143)
    finally:
        signal.signal(signal.SIGTERM, previous)
        progress.close()
    print(f"MNIST is ready in {dest}")
    return 0


def mistake_file_name(index: int, label: int, answer: int, confidence: float) -> str:
    """``00042_label7_read1_93pct.png``: test index, true label, the model's answer, its confidence."""
    return f"{index:05d}_label{label}_read{answer}_{int(round(confidence * 100))}pct.png"


def _write_mistakes(folder: Path, images, evaluation) -> int:
    import numpy as np

    from digitpad.imageio import save_png

    folder.mkdir(parents=True, exist_ok=True)
    for i in evaluation.mistakes:
        name = mistake_file_name(int(i), int(evaluation.labels[i]), int(evaluation.predictions[i]),
                                 float(evaluation.confidences[i]))
        save_png(folder / name, np.asarray(images[i]).reshape(28, 28))
    return len(evaluation.mistakes)


def cmd_eval(args) -> int:
    from digitpad.core.data import DataError, load_mnist
    from digitpad.core.evaluate import evaluate_logits, evaluate_model, fit_temperature, validation_split
    from digitpad.core.model_io import ModelFileError, model_temperature, parse_temperature

    try:
        model, meta = _load(args.model)
    except ModelFileError as e:
        return _fail(str(e), 1)
    temperature = model_temperature(meta)
    if args.temperature is not None:
        temperature, note = parse_temperature(args.temperature)
        if temperature is None:
            return _fail(f"--temperature: must be a positive number, got {args.temperature}")
        if note:
            _note(f"--{note}")
    try:
        mnist = load_mnist(args.data_dir)
    except DataError as e:
        return _fail(str(e), 1)
    ev = evaluate_model(model, mnist.test_images, mnist.test_labels, temperature=temperature)
    out = ev.to_dict()
    if temperature != 1.0:
        out["ece_uncalibrated"] = evaluate_logits(ev.logits, ev.labels).ece
    if args.fit_temperature:
        try:
            val_images, val_labels = validation_split(mnist, meta.get("train_config"))
        except ValueError as e:  # includes a train_config that does not describe a run
            return _fail(f"cannot fit a temperature: {e}", 1)
        fitted = fit_temperature(model, val_labels, images=val_images)
        out["fitted_temperature"] = fitted
        out["ece_fitted"] = evaluate_logits(ev.logits, ev.labels, fitted).ece
    if args.mistakes:
        try:
            out["mistakes_written"] = _write_mistakes(Path(args.mistakes), mnist.test_images, ev)
        except OSError as e:
            return _fail(f"--mistakes: cannot write into {args.mistakes}: {e}", 1)
        out["mistakes_dir"] = str(Path(args.mistakes))
    if args.json:
        print(_json(out))
        return 0
    name = args.model or "shipped model"
    lo, hi = ev.accuracy_ci95
    print(f"{name}: {model.describe()}")
    print(f"test accuracy {ev.accuracy:.2%} on {ev.n} digits (95% interval {lo:.2%} to {hi:.2%})")
    print("per class: " + "  ".join(f"{d}:{a:.1%}" for d, a in enumerate(ev.per_class)))
    print(f"calibration error (ECE, 15 bins) {ev.ece:.2%} at temperature {temperature:.3g}")
    if "ece_uncalibrated" in out:
        print(f"  without the temperature: {out['ece_uncalibrated']:.2%}")
    if "fitted_temperature" in out:
        print(f"temperature fitted on {len(val_labels)} validation digits: {out['fitted_temperature']:.3f}"
              f" -> calibration error {out['ece_fitted']:.2%}")
    if "mistakes_written" in out:
        print(f"wrote {out['mistakes_written']} misread digits to {args.mistakes}")
    return 0


def cmd_predict(args) -> int:
    from digitpad.core.files import display
    from digitpad.core.model_io import ModelFileError, model_temperature
    from digitpad.core.reading import read_image
    from digitpad.imageio import load_image

    try:
        model, meta = _load(args.model)
    except ModelFileError as e:
        return _fail(str(e), 1)
    temperature = model_temperature(meta)
    failed = 0
    for path in args.images:
        shown = display(path)  # printable also when the name is not valid UTF-8
        try:
            reading = read_image(model, load_image(path), temperature, label=path)
        except (ValueError, OSError) as e:
            failed += 1
            msg = str(e) if shown in str(e) else f"{shown}: {e}"
            if args.json:
                print(_json({"path": path, "error": msg}), flush=True)
            else:
                print(f"digitpad: {msg}", file=sys.stderr)
            continue
        if reading.blank:
            out = {"path": path, "digit": None, "confidence": 0.0, "probabilities": [0.0] * 10, "blank": True}
        else:
            out = {"path": path, "digit": reading.digit, "confidence": reading.confidence,
                   "probabilities": [round(float(p), 6) for p in reading.probabilities]}
        if args.json:
            print(_json(out), flush=True)
        elif out["digit"] is None:
            print(f"{shown}: blank (no ink found)")
        else:
            print(f"{shown}: {out['digit']} ({out['confidence']:.1%})")
    return 1 if failed else 0


def cmd_train(args) -> int:
    from digitpad.cli.train import cmd_train as run

    return run(args)


def cmd_finetune(args) -> int:
    from digitpad.cli.finetune import cmd_finetune as run

    return run(args)


def cmd_runs(args) -> int:
    from digitpad.cli.history import cmd_runs as run

    return run(args)


def cmd_experiment(args) -> int:
    from digitpad.cli.history import cmd_experiment as run

    return run(args)


COMMANDS = {"gui": cmd_gui, "download": cmd_download, "train": cmd_train, "eval": cmd_eval,
            "predict": cmd_predict, "finetune": cmd_finetune, "runs": cmd_runs, "experiment": cmd_experiment}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    command = args.command or "gui"
    try:
        code = COMMANDS[command](args)
        sys.stdout.flush()  # here, where a closed pipe can still be answered, not at exit
    except BrokenPipeError:
        # whoever read our output stopped early (`digitpad eval --json | head -c 600`): not an
        # error to report; send what is left to /dev/null so the exit does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for a writer stopped by SIGPIPE
    return code


if __name__ == "__main__":
    raise SystemExit(main())
