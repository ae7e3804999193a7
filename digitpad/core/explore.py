"""Looking around: the data, the network's map of the digits, a lab, robustness curves.

- The data: each class's average digit and counts, random digits of a class.
- The map: the last hidden layer's outputs for a few thousand digits, projected to 2-D
  with scikit-learn (``PCA`` at once, ``TSNE`` on request); a new drawing is placed on it
  (PCA: its projection; t-SNE, which cannot project new points: the mean position of its
  nearest neighbours in the hidden layer's space).
- The lab: a copy of a model with chosen hidden units switched off (their outgoing
  weights zeroed, so the unit's output no longer reaches the next layer, whatever the
  activation), and ways to choose units (least or most active, at random).
- Robustness: accuracy as rotation, noise and stroke width grow, with each digit drawn
  large and read through the same preprocessing as a drawing.

Nothing here knows about Qt; everything slow takes ``progress(done, total)`` and
``cancel()`` callables so a worker thread can report and stop it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from digitpad.core.mlp import MLP, as_batch

N_CLASSES = 10


class Cancelled(Exception):
    """A long computation was asked to stop."""


def _check(cancel) -> None:
    if cancel is not None and cancel():
        raise Cancelled


# ---- the data -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassSummary:
    means: np.ndarray  # (10, 28, 28) float32 in [0, 1]: each class's average digit
    counts: np.ndarray  # (10,) int


def class_summary(images: np.ndarray, labels: np.ndarray) -> ClassSummary:
    """Average digit and count of each class of ``images`` (N, 28, 28) uint8."""
    labels = np.asarray(labels, dtype=np.intp)
    counts = np.bincount(labels, minlength=N_CLASSES)[:N_CLASSES]
    flat = np.asarray(images).reshape(len(labels), -1)  # (N, 784)
    means = np.zeros((N_CLASSES, flat.shape[1]), np.float32)  # (10, 784)
    for k in range(N_CLASSES):
        if counts[k]:
            means[k] = flat[labels == k].mean(axis=0, dtype=np.float64) / 255.0
    return ClassSummary(means.reshape(N_CLASSES, 28, 28), counts)


def random_digits(labels: np.ndarray, digit: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``k`` random examples of ``digit`` (fewer when there are fewer)."""
    where = np.flatnonzero(np.asarray(labels) == digit)
    return np.sort(rng.choice(where, size=min(k, len(where)), replace=False))


# ---- the map ------------------------------------------------------------------------------


def hidden_features(model: MLP, images: np.ndarray, batch: int = 1000, cancel=None) -> np.ndarray:
    """The last hidden layer's outputs, (N, n_hidden) float32 (the inputs for a network without hidden layers)."""
    out = []
    for s in range(0, len(images), batch):
        _check(cancel)
        x = as_batch(images[s:s + batch], model.config.n_in)
        t = model.trace(x)
        out.append(t.activations[-1] if t.activations else x)
    return np.concatenate(out).astype(np.float32, copy=False)


@dataclass
class DigitMap:
    """Digits placed on a plane by what the network's last hidden layer makes of them."""

    method: str  # "pca" | "tsne"
    coords: np.ndarray  # (N, 2)
    features: np.ndarray  # (N, n_hidden)
    indices: np.ndarray  # (N,) index of each point in the test set
    labels: np.ndarray  # (N,)
    predictions: np.ndarray  # (N,)
    projector: object = None  # the fitted PCA (None for t-SNE)
    neighbours: int = 10

    @property
    def misread(self) -> np.ndarray:
        return self.predictions != self.labels

    def place(self, feature: np.ndarray) -> np.ndarray:
        """Where a new digit with hidden-layer output ``feature`` (n_hidden,) goes on the map, (2,)."""
        f = np.asarray(feature, np.float32).reshape(1, -1)
        if self.projector is not None:
            return self.projector.transform(f)[0]
        d = ((self.features - f) ** 2).sum(axis=1)  # (N,)
        near = np.argpartition(d, self.neighbours)[: self.neighbours]
        return self.coords[near].mean(axis=0)

    def nearest(self, xy, radius: float) -> int | None:
        """The point nearest to ``xy`` within ``radius`` (map units), as a row index, or None."""
        d = ((self.coords - np.asarray(xy, np.float64)) ** 2).sum(axis=1)
        i = int(np.argmin(d))
        return i if d[i] <= radius * radius else None


def digit_map(model: MLP, images: np.ndarray, labels: np.ndarray, method: str = "pca", n: int = 3000,
              seed: int = 0, cancel=None) -> DigitMap:
    """Project ``n`` digits (a fixed random choice) of ``images`` to 2-D by the model's last hidden layer.

    ``method`` is ``"pca"`` (a fraction of a second) or ``"tsne"`` (tens of seconds for
    3,000 digits; scikit-learn's TSNE has no progress callback, so ``cancel`` is checked
    only before it starts).
    """
    if method not in ("pca", "tsne"):
        raise ValueError(f"method: unknown {method!r}; choose pca or tsne")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(labels), size=min(n, len(labels)), replace=False))
    feats = hidden_features(model, images[idx], cancel=cancel)  # (n, h)
    preds = model.predict(images[idx])
    _check(cancel)
    if method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed).fit(feats)
        coords, projector = pca.transform(feats), pca
    else:
        from sklearn.manifold import TSNE

        from sklearn.decomposition import PCA

        perplexity = float(min(30.0, max(2.0, (len(idx) - 1) / 3)))
        # scikit-learn's advice for dense data: reduce to about 50 dimensions with PCA first
        # (it removes noise and makes the neighbour search cheaper)
        dims = min(50, feats.shape[1], len(idx))
        reduced = PCA(n_components=dims, random_state=seed).fit_transform(feats) if feats.shape[1] > dims else feats
        coords = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(reduced)
        projector = None
    return DigitMap(method, np.asarray(coords, np.float64), feats, idx, np.asarray(labels)[idx], preds, projector)


# ---- the lab ------------------------------------------------------------------------------


def switch_off(model: MLP, off: dict[int, np.ndarray]) -> MLP:
    """A copy of ``model`` with hidden units switched off: ``off[layer]`` lists unit indices of hidden layer ``layer``.

    A unit is switched off by zeroing its outgoing weights, so nothing it outputs reaches
    the next layer: the same for ReLU (a dead unit) as for sigmoid, whose output would be
    0.5 even at zero input.
    """
    copy = model.copy()
    for layer, units in off.items():
        if not 0 <= layer < model.n_layers - 1:
            raise ValueError(f"layer: hidden layers are 0 to {model.n_layers - 2}, got {layer}")
        units = np.asarray(units, dtype=np.intp)
        if units.size and (units.min() < 0 or units.max() >= model.config.hidden[layer]):
            raise ValueError(f"units: layer {layer} has units 0 to {model.config.hidden[layer] - 1}")
        copy.weights[layer + 1][units, :] = 0.0  # (n_layer, n_next): the rows are what each unit sends on
    return copy


def unit_activity(model: MLP, images: np.ndarray, batch: int = 1000) -> list[np.ndarray]:
    """Each hidden unit's mean output over ``images``, one (n_i,) array per hidden layer."""
    sums = [np.zeros(h, np.float64) for h in model.config.hidden]
    for s in range(0, len(images), batch):
        t = model.trace(as_batch(images[s:s + batch], model.config.n_in))
        for acc, a in zip(sums, t.activations):
            acc += a.sum(axis=0)
    return [acc / max(len(images), 1) for acc in sums]


def choose_units(activity: np.ndarray, count: int, mode: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """``count`` units of one layer: the ``"least"`` or ``"most"`` active, or ``"random"`` ones."""
    n = len(activity)
    count = int(min(max(count, 0), n))
    if mode == "least":
        return np.sort(np.argsort(activity, kind="stable")[:count])
    if mode == "most":
        return np.sort(np.argsort(-np.asarray(activity), kind="stable")[:count])
    if mode == "random":
        rng = rng if rng is not None else np.random.default_rng()
        return np.sort(rng.choice(n, size=count, replace=False))
    raise ValueError(f"mode: unknown {mode!r}; choose least, most or random")


# ---- robustness ---------------------------------------------------------------------------

ROBUSTNESS_LEVELS = {
    "rotation": (0.0, 10.0, 20.0, 30.0, 45.0),  # degrees
    "noise": (0.0, 0.1, 0.2, 0.3, 0.4),  # standard deviation of Gaussian noise, ink = 1
    "stroke": (0.0, 1.0, 2.0, 3.0, 4.0),  # MNIST pixels the pen grows by
}
_UP = 4  # drawn at 112x112 so the stroke width can grow by fractions of an MNIST pixel


def _render(digit: np.ndarray, kind: str, level: float, rng: np.random.Generator) -> np.ndarray:
    """One 28x28 uint8 digit as a 112x112 grey picture changed by ``kind`` at ``level``."""
    from scipy import ndimage as ndi

    big = ndi.zoom(digit.astype(np.float32) / 255.0, _UP, order=1)  # (112, 112)
    if kind == "rotation" and level:
        big = ndi.rotate(big, level, reshape=False, order=1, mode="constant")
    elif kind == "stroke" and level:
        size = 1 + 2 * int(round(level * _UP / 2))
        big = ndi.grey_dilation(big, footprint=_disk(size))
    elif kind == "noise" and level:
        big = big + rng.normal(0.0, level, big.shape).astype(np.float32)
    return (np.clip(big, 0.0, 1.0) * 255).astype(np.uint8)


def _disk(size: int) -> np.ndarray:
    r = (size - 1) / 2
    yy, xx = np.mgrid[:size, :size]
    return (yy - r) ** 2 + (xx - r) ** 2 <= r * r + 0.5


def robustness_curves(models: list[MLP], images: np.ndarray, labels: np.ndarray, kinds=tuple(ROBUSTNESS_LEVELS),
                      n: int = 500, seed: int = 0, progress=None, cancel=None) -> dict[str, np.ndarray]:
    """Accuracy of each model at each level of each kind of change, on ``n`` random digits.

    Returns ``{kind: (n_models, n_levels) accuracies}``; the levels are
    ``ROBUSTNESS_LEVELS[kind]``. Every picture goes through ``preprocess`` as a drawing
    would, and all models read the same pictures.
    """
    from digitpad.core.preprocess import preprocess

    rng = np.random.default_rng(seed)
    idx = rng.choice(len(labels), size=min(n, len(labels)), replace=False)
    y = np.asarray(labels)[idx]
    total = sum(len(ROBUSTNESS_LEVELS[k]) for k in kinds) * len(idx)
    done = 0
    out = {}
    for kind in kinds:
        levels = ROBUSTNESS_LEVELS[kind]
        acc = np.zeros((len(models), len(levels)))
        for j, level in enumerate(levels):
            x = np.empty((len(idx), 784), np.float32)
            for r, i in enumerate(idx):
                if r % 50 == 0:
                    _check(cancel)
                    if progress is not None:
                        progress(done + r, total)
                x[r] = preprocess(_render(np.asarray(images[i]).reshape(28, 28), kind, level, rng)).image.reshape(-1)
            done += len(idx)
            for m, model in enumerate(models):
                acc[m, j] = float((model.predict(x) == y).mean())
        out[kind] = acc
    if progress is not None:
        progress(total, total)
    return out
