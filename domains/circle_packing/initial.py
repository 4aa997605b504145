"""Constructor-based circle packing for n=26 circles in the unit square.

A deliberately naive starting point: a centre circle, a ring of 8 and a ring of 16,
pushed inside the square by clipping, then each circle grown as far as its walls and
neighbours allow. Evolution is expected to improve on the layout and the sizing. The
layout constants are named once, so that changing one changes the layout consistently,
and each states the range it may take (``# in [low, high]``; the count n is fixed).
"""

import numpy as np


def construct_packing():
    """Place 26 circles and size them.

    Returns:
        centers: (26, 2) array of circle centres
        radii: (26,) array of radii
        sum_radii: the sum of the radii (the score)
    """
    n = 26  # the task's count of circles, fixed: in [26, 26]
    ring = 8  # circles in the inner ring, in [3, 22]
    outer_ring = 16  # circles in the outer ring, in [3, 22]
    middle = 0.5  # centre of the layout, in [0, 1]
    inner = 0.3  # radius of the inner ring, in [0, 1]
    outer = 0.7  # radius of the outer ring (clipped back into the square), in [0, 1.5]
    margin = 0.01  # how far from the walls a clipped centre stays, in [0, 0.2]
    centers = np.zeros((n, 2))

    centers[0] = [middle, middle]
    for i in range(ring):
        angle = 2 * np.pi * i / ring
        centers[i + 1] = [middle + inner * np.cos(angle), middle + inner * np.sin(angle)]
    for i in range(outer_ring):
        angle = 2 * np.pi * i / outer_ring
        centers[i + 1 + ring] = [middle + outer * np.cos(angle), middle + outer * np.sin(angle)]

    centers = np.clip(centers, margin, 1 - margin)
    radii = compute_max_radii(centers)
    sum_radii = np.sum(radii)
    return centers, radii, sum_radii


def compute_max_radii(centers):
    """The largest radii for fixed centres that keep circles inside and apart.

    Each radius starts at the distance to the nearest wall; every overlapping pair is
    then scaled down in proportion. Scaling leaves float overlaps of ~1e-17, which a
    strict checker rejects, so all radii are finally shrunk by a tiny relative margin.
    """
    n = centers.shape[0]
    radii = np.ones(n)

    for i in range(n):
        x, y = centers[i]
        radii[i] = min(x, y, 1 - x, 1 - y)

    for i in range(n):
        for j in range(i + 1, n):
            dist = np.sqrt(np.sum((centers[i] - centers[j]) ** 2))
            if radii[i] + radii[j] > dist:
                scale = dist / (radii[i] + radii[j])
                radii[i] *= scale
                radii[j] *= scale

    return radii * (1 - 1e-12)


if __name__ == "__main__":
    _, _, total = construct_packing()
    print(f"sum of radii: {total:.6f}")
