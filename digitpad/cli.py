"""The `digitpad` command: the desktop app, and train / eval / predict / download in the terminal.

``digitpad`` alone starts the app. Heavy modules (NumPy, Qt) are imported inside the
subcommands so ``digitpad --help`` and start-up stay quick.
"""

from __future__ import annotations

import argparse
import json
import math
import numbers
import os
import shlex
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


class _Refused(Exception):
    """A train setting or output path that cannot work; the text names it."""


def _train_output(args) -> "Path":
    """Where ``train`` will save, checked before it trains: a file name in a folder it can write."""
    import tempfile
    import time

    from digitpad.core.model_io import user_models_dir

    if args.out:
        path = Path(args.out)
    else:
        try:
            folder = user_models_dir()
        except OSError as e:
            raise _Refused(f"--out: cannot create your models folder ({e}); give --out PATH") from None
        path = folder / f"digitpad-{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}.npz"
    if path.suffix != ".npz":  # as save_model names it
        path = path.with_name(path.name + ".npz")
    if path.is_dir():
        raise _Refused(f"--out: {path} is a folder; give a file name, e.g. {path / 'model.npz'}")
    existing = next((p for p in (path.parent, *path.parent.parents) if p.exists()), None)
    if existing is None:
        raise _Refused(f"--out: no folder of {path} exists")
    if not existing.is_dir():
        raise _Refused(f"--out: {existing} is a file, so {path} cannot be created under it")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise _Refused(f"--out: cannot write in {existing} ({e.strerror or e})") from None
    return path


def _run_with_progress(trainer, args, config, recorder):
    """Iterate ``trainer`` under a progress bar, recording each record in the run history; the
    first Ctrl-C stops at a step boundary, a second aborts."""
    import signal
    import threading

    from tqdm import tqdm

    from digitpad.core.train import EpochRecord

    bar = tqdm(total=trainer.total_steps, unit="step", disable=args.quiet, file=sys.stderr,
               dynamic_ncols=True, desc=f"{args.preset}")

    # Ctrl-C asks the run to stop at the next step boundary instead of raising inside the
    # trainer (which would end its generator and lose the run); a second Ctrl-C aborts.
    def on_interrupt(signum, frame):
        if trainer.stopping:
            raise KeyboardInterrupt
        trainer.stop()

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, on_interrupt)
    announced = False
    try:
        for rec in trainer:
            recorder.add(rec)
            if trainer.stopping and not announced:
                announced = True
                bar.write("digitpad: stopping; keeping the best weights so far (Ctrl-C again to abort)",
                          file=sys.stderr)
            if isinstance(rec, EpochRecord):
                bar.set_postfix_str(
                    f"epoch {rec.epoch}/{config.epochs} loss {rec.train_loss:.4f} "
                    f"val acc {rec.val_accuracy:.2%}", refresh=False)
            elif rec.message:
                bar.write(f"digitpad: {rec.message}", file=sys.stderr)
            else:
                bar.update(rec.step - bar.n)
                if rec.step % 50 == 0:
                    bar.set_postfix_str(f"loss {rec.loss:.4f} acc {rec.accuracy:.1%}", refresh=False)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        bar.close()
    return trainer.result


class _CtrlCWaits:
    """Ctrl-C waits until the block ends (a save is short, and cutting it would lose the run);
    ``caught`` tells whether one came."""

    def __enter__(self):
        import signal
        import threading

        self.caught = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._record)
        return self

    def _record(self, signum, frame):
        self.caught = True

    def __exit__(self, *exc_info):
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _save_model_somewhere(target, model, meta) -> tuple["Path", str | None]:
    """Save to ``target``; when that fails (a full or read-only disk), to a new name in your models
    folder or the temporary folder. Returns the path and a note when it is not ``target``."""
    import tempfile

    from digitpad.core.model_io import free_path, save_model, user_models_dir

    try:
        return save_model(target, model, meta), None
    except OSError as e:
        first = f"cannot write {target} ({e.strerror or e})"
    folders = []
    try:
        folders.append(user_models_dir())
    except OSError:
        pass
    folders.append(Path(tempfile.gettempdir()))
    for folder in folders:
        if folder.resolve() == target.parent.resolve():
            continue
        try:
            path = save_model(free_path(folder, target.stem), model, meta)
        except OSError:
            continue
        return path, f"{first}; saved the model as {path} instead"
    raise OSError(f"{first}, nor anywhere else; the trained model was not saved")


def _train(args) -> int:
    import time

    from digitpad.core.data import DataError, load_mnist
    from digitpad.core.model_io import ModelFileError, build_metadata, free_path
    from digitpad.core.runs import open_recorder
    from digitpad.core.train import PRESETS, Trainer, evaluate, with_overrides

    try:
        config = with_overrides(
            PRESETS[args.preset], hidden=args.hidden, activation=args.activation, optimizer=args.optimizer,
            lr=args.lr, schedule=args.schedule, batch_size=args.batch_size, epochs=args.epochs,
            weight_decay=args.weight_decay, dropout=args.dropout, augment=args.augment, limit=args.limit,
            seed=args.seed, threads=args.threads,
        )
        out = _train_output(args)
    except ValueError as e:
        return _fail(f"invalid setting: {e}")
    except _Refused as e:
        return _fail(str(e))
    try:
        mnist = load_mnist(args.data_dir)
    except DataError as e:
        return _fail(str(e), 1)
    except KeyboardInterrupt:
        return _fail("interrupted while loading MNIST; nothing was trained", 130)
    try:
        trainer = Trainer(config, mnist)
    except ValueError as e:
        return _fail(f"invalid setting: {e}")
    recorder, problem = open_recorder(config, "cli", name=f"{args.preset} (terminal)",
                                      extra={"preset": args.preset, "command": shlex.join(["digitpad", *args.argv])})
    if problem:
        print(f"digitpad: {problem}", file=sys.stderr)
    with recorder:  # a run cut short by an error or a second Ctrl-C is kept as interrupted
        return _train_and_save(args, config, mnist, trainer, out, recorder)


def _train_and_save(args, config, mnist, trainer, out, recorder) -> int:
    import time

    from digitpad.core.model_io import ModelFileError, build_metadata, free_path
    from digitpad.core.train import evaluate

    t0 = time.perf_counter()
    try:
        result = _run_with_progress(trainer, args, config, recorder)
    except KeyboardInterrupt:
        return _fail("training aborted; no model was saved", 130)
    code = 1 if result.diverged else 0

    try:
        test_loss, test_acc = evaluate(result.model, mnist.test_images, mnist.test_labels)
    except KeyboardInterrupt:
        test_loss = test_acc = float("nan")
        code = 130
        print("digitpad: test evaluation interrupted; the model is saved without test figures", file=sys.stderr)
    metrics = {
        "test_accuracy": _number(test_acc),
        "test_loss": _number(test_loss),
        "val_accuracy": _number(result.best_val_accuracy),
        "best_epoch": result.best_epoch,
        "best_step": result.best_step,
        "epochs_done": result.epochs_done,
        "train_seconds": round(result.seconds, 2),
    }
    meta = build_metadata(result.model, train_config=config.to_dict(), seed=config.seed, metrics=metrics,
                          preset=args.preset, command=shlex.join(["digitpad", *args.argv]), diverged=result.diverged)

    # a run that diverged never replaces a file: its last good weights get a name of their own,
    # and only when an epoch was validated (before that they are no better than a fresh start)
    path = note = None
    if not result.diverged:
        target = out
    elif result.epochs_done:
        target = free_path(out.parent, f"{out.stem}-last-good")
        note = f"training diverged: saved the last good weights as {target}; {out} was not written"
    else:
        target = None
        note = "training diverged before it finished a good epoch; no model was saved"
    if target is not None:
        with _CtrlCWaits() as ctrl_c:
            try:
                path, fallback = _save_model_somewhere(target, result.model, meta)
            except (OSError, ModelFileError) as e:
                return _fail(str(e), 1)
        if fallback:
            note = fallback if note is None else f"{note}; {fallback}"
            code = code or 1
        if ctrl_c.caught:
            note = f"interrupted; finished saving {path} first" if note is None else note
            code = 130
    recorder.finish(result, test_accuracy=test_acc, test_loss=test_loss, model_path=path)
    if note:
        print(f"digitpad: {note}", file=sys.stderr)
    summary = {
        "model": str(path) if path is not None else None,
        "test_accuracy": _number(test_acc),
        "test_loss": _number(test_loss),
        "val_accuracy": _number(result.best_val_accuracy),
        "epochs": result.epochs_done,
        "steps": result.steps,
        "train_seconds": round(result.seconds, 3),
        "total_seconds": round(time.perf_counter() - t0, 3),
        "diverged": result.diverged,
        "stopped": result.stopped,
        "message": result.message,
        "config": config.to_dict(),
        "run": recorder.id,
    }
    if args.json:
        print(_json(summary))
    else:
        accuracy = "no test digits" if metrics["test_accuracy"] is None else f"test accuracy {test_acc:.2%}"
        saved = f"saved {path}" if path is not None else "nothing saved"
        print(f"{accuracy} after {result.epochs_done} epochs ({result.seconds:.1f} s of training); {saved}")
    return code


def cmd_train(args) -> int:
    try:
        return _train(args)
    except KeyboardInterrupt:  # between the steps that handle it themselves
        return _fail("interrupted; no model was saved", 130)


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
