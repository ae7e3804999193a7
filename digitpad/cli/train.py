"""`digitpad train`: check where the model goes, train under a progress bar, record the run, save it safely.

A run that diverged never replaces a file; Ctrl-C stops at a step boundary (twice: aborts)
and never interrupts a save; a full or read-only disk saves elsewhere and says where.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from digitpad.cli import _fail, _json, _number


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

    from digitpad.core.data import DataError, load_mnist
    from digitpad.core.runs import open_recorder
    from digitpad.core.train import PRESETS, Trainer, with_overrides

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
