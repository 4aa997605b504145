"""A quadratic surrogate of the score: which of several drawn children looks best.

The model move (``elite_model.py``) draws a child's constants from the elite's spread, so
it learns *where* good settings lie but not *which way is up*: half its draws land on the
wrong side of the optimum. The nodes the run has already scored say that too, for free. A
quadratic fitted to them by least squares (the model of derivative-free trust-region
methods such as NEWUOA and BOBYQA) predicts each drawn candidate's score, and the move keeps
the most promising of a batch; the evaluation itself still decides.

Measured on offline circle packing (300 candidates): Nelder-Mead started from the best
node of a run gained more than 0.05 on 8 of 20 runs before and on 7 of 40 with the surrogate
picking the best of 100 draws; the median best went from 2.003 to 2.019 on seeds 0-159 and
from 1.987 to 1.995 on seeds 160-319 (``benchmarks/circle_packing_quality.py``).

The fit uses only points that mean the same thing: nodes of one skeleton *and* the same
ints, since a count change moves the whole landscape. With few points the quadratic is
separable (1 + 2d coefficients), with enough it has the cross terms too (which capture a
ridge such as "a larger ring needs a smaller margin"); with fewer than ``min_points``
there is no surrogate and the move draws blindly, as before; with too few for a quadratic
but enough for a plane (many constants: 24 coordinates), a plane (``fit_linear``).

The model is fitted to the constants as the program writes them, not their logs: a score
that is quadratic in a constant is then quadratic in the model, and its peak
(``Quadratic.peak``, kept within ``PEAK_RADIUS`` spreads of the points) is a candidate too.
On the generic suite (``benchmarks/search_quality.py``) that solves the quadratic, the
ellipsoid and the noisy sphere within 200 evaluations, where the draws alone did not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RIDGE = 1e-6  # keeps the normal equations solvable when points are nearly collinear
SPARE = 2  # points beyond the coefficient count before a model is trusted
PEAK_RADIUS = 4.0  # how far (in spreads of the fit points) the model's peak may lie


@dataclass(frozen=True)
class Quadratic:
    """A fitted quadratic on standardised inputs; ``predict`` takes raw inputs."""

    mean: np.ndarray  # per input: centre used to standardise
    scale: np.ndarray  # per input: spread used to standardise
    used: np.ndarray  # indices of the inputs that varied among the points
    full: bool  # whether cross terms are included
    coef: np.ndarray
    linear: bool = False  # a plane only (``fit_linear``): too few points for curvature

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted scores of the rows of ``x`` (higher is better if fitted so)."""
        z = (np.atleast_2d(x)[:, self.used] - self.mean) / self.scale
        return _features(z, self.full, self.linear) @ self.coef

    def peak(self, base: np.ndarray, radius: float = PEAK_RADIUS) -> np.ndarray | None:
        """The model's maximum as a full input row (``base`` where an input is unused), or
        None when the model has no maximum (a plane, or curvature up in some direction).

        It is pulled back to ``radius`` fit-point spreads from the points' centre: a
        quadratic fitted to a curved ridge is trustworthy near its points only.
        """
        if self.linear:
            return None
        d = len(self.used)
        gradient = self.coef[1 : 1 + d]
        hessian = np.diag(2.0 * self.coef[1 + d : 1 + 2 * d])
        if self.full:
            pairs = [(i, j) for i in range(d) for j in range(i + 1, d)]
            for (i, j), c in zip(pairs, self.coef[1 + 2 * d :], strict=True):
                hessian[i, j] = hessian[j, i] = c
        if np.max(np.linalg.eigvalsh(hessian)) >= 0:
            return None
        z = np.linalg.solve(hessian, -gradient)
        if (norm := float(np.linalg.norm(z))) > radius:
            z *= radius / norm
        out = np.array(base, dtype=float)
        out[self.used] = self.mean + self.scale * z
        return out


def min_points(d: int, full: bool = False) -> int:
    """Points needed to fit a separable (or a full) quadratic in ``d`` inputs."""
    coefficients = 1 + 2 * d + (d * (d - 1) // 2 if full else 0)
    return coefficients + SPARE


def _points(
    x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(x, y, spread, used): the points as arrays and the inputs that vary among them
    (the others carry no information), or None when the points are unusable."""
    x = np.atleast_2d(np.asarray(x, dtype=float))
    y = np.asarray(y, dtype=float)
    if len(x) != len(y) or not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)):
        return None
    spread = x.std(axis=0)
    used = np.flatnonzero(spread > 1e-12 * np.maximum(1.0, np.abs(x).max(axis=0)))
    return x, y, spread, used


def fit_quadratic(x: np.ndarray, y: np.ndarray) -> Quadratic | None:
    """Least-squares quadratic through (x, y), or None when the points are too few.

    Inputs that do not vary among the points carry no information and are left out.
    """
    points = _points(x, y)
    if points is None:
        return None
    x, y, spread, used = points
    d = len(used)
    if d == 0 or len(x) < min_points(d):
        return None
    full = len(x) >= min_points(d, full=True)
    mean, scale = x[:, used].mean(axis=0), spread[used]
    a = _features((x[:, used] - mean) / scale, full)
    coef = np.linalg.lstsq(a.T @ a + RIDGE * np.eye(a.shape[1]), a.T @ y, rcond=None)[0]
    return Quadratic(mean, scale, used, full, coef)


def fit_model(x: np.ndarray, y: np.ndarray) -> Quadratic | None:
    """A quadratic when the points allow one, else a plane (``fit_linear``), else None."""
    return fit_quadratic(x, y) or fit_linear(x, y)


def fit_linear(x: np.ndarray, y: np.ndarray) -> Quadratic | None:
    """A least-squares plane through (x, y): with many constants (24 coordinates) a
    quadratic needs more points than the elite has, but a slope already says which way is
    up. None with fewer than 1 + d + ``SPARE`` points."""
    points = _points(x, y)
    if points is None:
        return None
    x, y, spread, used = points
    if len(used) == 0 or len(x) < 1 + len(used) + SPARE:
        return None
    mean, scale = x[:, used].mean(axis=0), spread[used]
    a = _features((x[:, used] - mean) / scale, False, True)
    coef = np.linalg.lstsq(a.T @ a + RIDGE * np.eye(a.shape[1]), a.T @ y, rcond=None)[0]
    return Quadratic(mean, scale, used, False, coef, linear=True)


def _features(z: np.ndarray, full: bool, linear: bool = False) -> np.ndarray:
    n, d = z.shape
    columns = [np.ones(n), *(z[:, j] for j in range(d))]
    if linear:
        return np.stack(columns, axis=1)
    columns += [z[:, j] ** 2 for j in range(d)]
    if full:
        columns += [z[:, i] * z[:, j] for i in range(d) for j in range(i + 1, d)]
    return np.stack(columns, axis=1)
