"""The user's digits on disk: adding, listing, removing, importing, exporting, bad files."""

from pathlib import Path

import numpy as np
import pytest

from digitpad.core.samples import SampleError, SampleStore, samples_dir, scan_folder
from digitpad.imageio import load_image, save_png

DATA = Path(__file__).resolve().parents[1] / "data" / "handwriting"


class Stroke:
    """Shaped like the canvas's strokes: points (n, 3) as x, y, width factor, and a pen width."""

    def __init__(self, points, width):
        self.points = np.asarray(points, np.float32)
        self.width = width


def canvas_bitmap() -> np.ndarray:
    """A 280x280 canvas bitmap: white ink on black, a vertical bar."""
    bitmap = np.zeros((280, 280), np.uint8)
    bitmap[60:220, 130:148] = 255
    return bitmap


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if p.is_file()]


def test_the_default_folder_is_in_the_users_data_folder():
    assert samples_dir().name == "samples" and samples_dir().parent.name == "digitpad"
    assert SampleStore().root == samples_dir()


def test_add_keeps_the_original_picture_and_its_strokes(tmp_path):
    store = SampleStore(tmp_path / "samples")
    strokes = [Stroke([[139, 60, 1.0], [139, 220, 0.8]], 18.0)]
    sample_id = store.add(7, canvas_bitmap(), strokes)
    assert sample_id.startswith("7/")
    sample = store.get(sample_id)
    assert sample.path.parent == tmp_path / "samples" / "7" and sample.path.suffix == ".png"
    picture = store.picture(sample_id)
    assert picture.shape == (280, 280, 4)  # the canvas bitmap, not a 28x28
    assert np.array_equal(picture[..., 0], canvas_bitmap())
    kept = store.strokes(sample_id)
    assert kept[0]["width"] == 18.0 and kept[0]["points"] == [[139.0, 60.0, 1.0], [139.0, 220.0, 0.8]]
    assert not leftovers(tmp_path)


def test_list_count_and_remove(tmp_path):
    store = SampleStore(tmp_path)
    ids = [store.add(d, canvas_bitmap()) for d in (3, 3, 5)]
    assert len(set(ids)) == 3
    assert store.counts() == {0: 0, 1: 0, 2: 0, 3: 2, 4: 0, 5: 1, 6: 0, 7: 0, 8: 0, 9: 0}
    assert [s.id for s in store.samples(3)] == sorted(ids[:2])
    assert store.get(ids[2]).strokes_path is None and store.strokes(ids[2]) is None
    assert store.remove(ids[0]) is True
    assert store.remove(ids[0]) is False  # already gone
    assert len(store) == 2 and store.counts()[3] == 1


def test_remove_also_deletes_the_strokes(tmp_path):
    store = SampleStore(tmp_path)
    sample_id = store.add(1, canvas_bitmap(), [np.array([[1.0, 2.0], [3.0, 4.0]])])
    sidecar = store.get(sample_id).strokes_path
    assert sidecar.is_file()
    store.remove(sample_id)
    assert not sidecar.exists() and not list(tmp_path.rglob("*.*"))


@pytest.mark.parametrize("digit", [10, -1, "3", 2.0, True, None])
def test_add_refuses_what_is_not_a_digit(tmp_path, digit):
    with pytest.raises(SampleError, match="digit"):
        SampleStore(tmp_path).add(digit, canvas_bitmap())


@pytest.mark.parametrize("bad_id", ["../7/x", "7/../../etc", "12/x", "7", "", "7/.hidden"])
def test_ids_that_could_leave_the_folder_are_refused(tmp_path, bad_id):
    store = SampleStore(tmp_path)
    with pytest.raises(SampleError, match="not a sample id"):
        store.remove(bad_id)


def test_a_picture_that_cannot_be_saved_leaves_nothing_behind(tmp_path):
    store = SampleStore(tmp_path)
    with pytest.raises(ValueError):
        store.add(4, np.full((20, 20), np.nan), [np.array([[1.0, 2.0], [3.0, 4.0]])])
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_bad_strokes_are_refused_before_anything_is_written(tmp_path):
    store = SampleStore(tmp_path)
    with pytest.raises(SampleError, match="strokes"):
        store.add(4, canvas_bitmap(), [np.array([1.0, 2.0, np.inf])])
    assert len(store) == 0


def make_folder(root: Path) -> Path:
    """A folder in the ImageFolder layout as another program leaves it, with every kind of bad entry."""
    for digit in (1, 7):
        (root / str(digit)).mkdir(parents=True)
        for name in ("anna-0.png", "dirk-0.png"):
            (root / str(digit) / name).write_bytes((DATA / "european" / str(digit) / name).read_bytes())
    good = (DATA / "european" / "7" / "anna-0.png").read_bytes()
    (root / "1" / "notes.png").write_text("not a picture")
    (root / "1" / "empty.png").write_bytes(b"")
    (root / "7" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "7" / "anna-0.json").write_text('{"strokes": [{"width": 12, "points": [[1, 2, 1], [3, 4, 1]]}]}')
    (root / "x").mkdir()
    (root / "x" / "stray.png").write_bytes(good)
    (root / "12").mkdir()
    (root / "README.txt").write_text("my digits")
    return root


def test_import_reads_the_layout_and_lists_each_bad_entry_once(tmp_path):
    source = make_folder(tmp_path / "from-elsewhere")
    store = SampleStore(tmp_path / "store")
    report = store.import_folder(source)
    assert len(report.added) == 4
    assert store.counts()[1] == 2 and store.counts()[7] == 2
    reasons = {
        "notes.png": "not a picture", "empty.png": "empty", "truncated.png": "cannot decode",
        f"{source / 'x'}:": "not a digit folder", f"{source / '12'}:": "not a digit folder",
        "README.txt": "not in a digit folder",
    }
    assert len(report.skipped) == len(reasons)
    for name, why in reasons.items():
        lines = [line for line in report.skipped if name in line]
        assert len(lines) == 1 and why in lines[0] and "\n" not in lines[0], (name, report.skipped)
    with_strokes = [s for s in store.samples(7) if s.strokes_path is not None]
    assert len(with_strokes) == 1 and store.strokes(with_strokes[0].id)[0]["width"] == 12
    originals = [load_image(source / "1" / name) for name in ("anna-0.png", "dirk-0.png")]
    for sample in store.samples(1):  # the original pixels, not a 28x28
        picture = store.picture(sample.id)
        assert sum(np.array_equal(picture, original) for original in originals) == 1


def test_export_then_import_gives_the_same_pictures(tmp_path):
    store = SampleStore(tmp_path / "a")
    ids = [store.add(d, canvas_bitmap(), [np.array([[1.0, 2.0], [3.0, 4.0]])] if d == 2 else None)
           for d in (2, 2, 9)]
    assert store.export_folder(tmp_path / "out") == 3
    files, skipped = scan_folder(tmp_path / "out")
    assert [d for d, _ in files] == [2, 2, 9] and skipped == []
    assert len(list((tmp_path / "out" / "2").glob("*.json"))) == 2
    other = SampleStore(tmp_path / "b")
    assert len(other.import_folder(tmp_path / "out").added) == 3
    for a, b in zip(store.samples(), other.samples()):
        assert np.array_equal(store.picture(a.id), other.picture(b.id))
        assert store.strokes(a.id) == other.strokes(b.id)
    assert not leftovers(tmp_path) and ids


def test_export_keeps_files_already_there(tmp_path):
    store = SampleStore(tmp_path / "a")
    sample_id = store.add(5, canvas_bitmap())
    taken = tmp_path / "out" / "5" / f"{sample_id.split('/')[1]}.png"
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"someone else's file")
    store.export_folder(tmp_path / "out")
    assert taken.read_bytes() == b"someone else's file"
    assert len(list(taken.parent.glob("*-2.png"))) == 1


@pytest.mark.parametrize("make", ["missing", "file"])
def test_a_missing_folder_or_a_file_is_one_clear_error(tmp_path, make):
    target = tmp_path / "samples"
    if make == "file":
        target.write_text("x")
    with pytest.raises(SampleError, match="no such folder" if make == "missing" else "not a folder"):
        SampleStore(tmp_path / "store").import_folder(target)


def test_saved_pictures_are_written_atomically(tmp_path, monkeypatch):
    """A crash while the picture is written leaves neither a half-written PNG nor its sidecar."""
    import digitpad.imageio

    store = SampleStore(tmp_path)

    def crash(path, array):
        raise OSError("disk full")

    monkeypatch.setattr(digitpad.imageio, "save_png", crash)
    with pytest.raises(OSError):
        store.add(3, canvas_bitmap(), [np.array([[1.0, 2.0], [3.0, 4.0]])])
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_save_png_is_what_add_uses(tmp_path):
    """The picture file is an ordinary PNG another program can read back."""
    sample_id = SampleStore(tmp_path).add(0, canvas_bitmap())
    path = tmp_path / f"{sample_id}.png"
    save_png(tmp_path / "copy.png", load_image(path))
    assert load_image(tmp_path / "copy.png").shape == (280, 280, 4)
