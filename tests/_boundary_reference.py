"""boundary-iou-api's band (cv2.copyMakeBorder + cv2.erode) emulated with SciPy: the tests' reference.

boundary-iou-api pads one zero pixel, erodes ``d`` times with a 3x3 kernel (OpenCV's border is
+inf) and subtracts; SciPy's ``binary_erosion(iterations=d, border_value=1)`` after the same padding
is that operation, in 2-D and 3-D.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def reference_boundaries(masks: np.ndarray, d: int) -> np.ndarray:
    out = []
    for m in masks:
        padded = np.pad(m, 1)
        eroded = ndimage.binary_erosion(padded, np.ones((3,) * m.ndim), iterations=d, border_value=1)
        out.append(m & ~eroded[(slice(1, -1),) * m.ndim])
    return np.stack(out) if out else masks.copy()
