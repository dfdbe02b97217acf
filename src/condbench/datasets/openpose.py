"""OpenPose 18-keypoint files and the coloured-limb skeleton image X-MDPT conditions on.

The keypoint files of the PIDM/GFLA DeepFashion split (``pose/<...>.txt``) hold 18 lines ``x y`` in the
176x256 frame of the original DeepFashion images (x after a 40-pixel white border; -1 = not detected),
in OpenPose's COCO-18 order. Exactly -1 in either coordinate marks a missing keypoint (the official
``x == -1 or y == -1`` test); any other value is a detection, drawn where it falls, off the canvas and negative
included, as the official renderer draws it (clipped). A file is refused when a coordinate is not a finite
number or lies more than one frame size beyond the frame (:data:`FRAME_MARGIN`): no detection of the person in
the image is there, so the file is damaged (and OpenCV cannot draw such a point).

X-MDPT (``my_dataset.FashionDataset.get_label_tensor``, identical in PIDM's
``data/fashion_data.py``) moves them onto the 256x256 training images and draws a skeleton: a filled circle
of radius 4 per keypoint, then 17 limbs as filled ellipses of half-width 4, each blended 40/60 over the
canvas, colours in OpenCV's BGR order and the image flipped to RGB at the end. :func:`render_skeleton`
reproduces it bit for bit (checked against the official function in ``tests/test_deepfashion.py``).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..textfiles import read_user_text

NUM_KEYPOINTS = 18
MISSING = -1.0
SKELETON_SIZE = (256, 256)  # (H, W) of the images X-MDPT is trained on
ORIGINAL_WIDTH, ORIGINAL_HEIGHT, BORDER = 176.0, 256.0, 40.0  # keypoint frame: 256x256 minus 40 px each side
FILE_FRAME = (ORIGINAL_WIDTH + 2 * BORDER, ORIGINAL_HEIGHT)  # (W, H) of the x, y a keypoint file holds
FRAME_MARGIN = 1.0  # a coordinate may lie up to this many frame sizes beyond the frame's edges

# OpenPose COCO-18 limbs as 1-based keypoint pairs; the official renderer draws only the first 17
# (the last two, ear-to-shoulder, are listed but never drawn).
LIMBS = ((2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12), (12, 13), (13, 14),
         (2, 1), (1, 15), (15, 17), (1, 16), (16, 18), (3, 17), (6, 18))
DRAWN_LIMBS = LIMBS[:17]
# One colour per keypoint and per drawn limb, in the order OpenCV receives them (BGR).
COLOURS_BGR = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
               (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
               (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
JOINT_RADIUS = 4
LIMB_HALF_WIDTH = 4
LIMB_BLEND = (0.4, 0.6)  # new canvas = 0.4 * canvas + 0.6 * (canvas with the limb filled in)


class KeypointFileError(ValueError):
    """A keypoint file that cannot be read; the message names the file and the line."""


def read_keypoints(path: str | Path) -> np.ndarray:
    """The keypoints of one OpenPose file as (18, 2) float64 ``(x, y)`` rows; -1 marks a missing coordinate.

    Reads what ``np.loadtxt`` reads in the official code (whitespace-separated, ``#`` comments, blank lines
    skipped) but insists on 18 lines of two finite numbers within reach of the frame (see the module docstring),
    and says where a file breaks that.
    """
    path = Path(path)
    rows: list[list[float]] = []
    for number, line in enumerate(read_user_text(path, "keypoint file").splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 2:
            raise KeypointFileError(f"{path}, line {number}: expected two numbers 'x y', found {len(fields)} "
                                    f"fields in {line.rstrip()!r}")
        try:
            values = [float(field) for field in fields]
        except ValueError:
            raise KeypointFileError(f"{path}, line {number}: {line.rstrip()!r} is not two numbers 'x y'") from None
        if not all(math.isfinite(v) for v in values):
            raise KeypointFileError(f"{path}, line {number}: {line.rstrip()!r} is not finite")
        if not all(within_reach(value, side) for value, side in zip(values, FILE_FRAME)):
            raise KeypointFileError(f"{path}, line {number}: {line.rstrip()!r} lies far outside the keypoint frame "
                                    f"({FILE_FRAME[0]:g}x{FILE_FRAME[1]:g} px): a coordinate is either -1 (missing) "
                                    f"or a pixel position within {FRAME_MARGIN:g} frame size of it; the file is "
                                    f"damaged, extract the keypoints again")
        rows.append(values)
    if len(rows) != NUM_KEYPOINTS:
        raise KeypointFileError(f"{path}: expected {NUM_KEYPOINTS} keypoints (one 'x y' line each, OpenPose COCO-18 "
                                f"order, -1 for missing), found {len(rows)}")
    return np.asarray(rows, dtype=np.float64)


def within_reach(value: float, side: float) -> bool:
    """Whether a file coordinate on an axis of ``side`` pixels lies at most :data:`FRAME_MARGIN` frame sizes
    beyond the frame's edges (-1, missing, is inside)."""
    return -FRAME_MARGIN * side <= value <= (1 + FRAME_MARGIN) * side


def to_canvas(keypoints: np.ndarray, size: tuple[int, int] = SKELETON_SIZE) -> np.ndarray:
    """Keypoints (18, 2) of the 176x256 frame moved onto an (H, W) canvas; -1 entries stay -1.

    The official ``trans_keypoins`` at test time (no scale or crop augmentation): x - 40, then
    x * W/176 and y * H/256, with the scale computed in the same order of operations so that the
    result is bit-identical.
    """
    points = np.array(keypoints, dtype=np.float64)  # (18, 2), a copy
    if points.shape != (NUM_KEYPOINTS, 2):
        raise ValueError(f"expected keypoints of shape ({NUM_KEYPOINTS}, 2), got {points.shape}")
    height, width = size
    missing = points == MISSING
    # the official code rescales by (1/176 * W) / W * W' with W' = W at test time; kept for bit-equality
    scale_x = 1.0 / ORIGINAL_WIDTH * width / width * width
    scale_y = 1.0 / ORIGINAL_HEIGHT * height / height * height
    points[:, 0] = (points[:, 0] - BORDER) * scale_x
    points[:, 1] = points[:, 1] * scale_y
    points[missing] = MISSING
    return points


def render_skeleton(points: np.ndarray, size: tuple[int, int] = SKELETON_SIZE) -> np.ndarray:
    """The coloured-limb skeleton (H, W, 3) uint8 RGB of canvas keypoints (18, 2) from :func:`to_canvas`."""
    import cv2

    points = np.asarray(points, dtype=np.float64)
    if points.shape != (NUM_KEYPOINTS, 2):
        raise ValueError(f"expected keypoints of shape ({NUM_KEYPOINTS}, 2), got {points.shape}")
    height, width = size
    canvas = np.zeros((height, width, 3), dtype=np.uint8)  # (H, W, 3) BGR
    present = (points[:, 0] != MISSING) & (points[:, 1] != MISSING)
    for k in np.flatnonzero(present):
        cv2.circle(canvas, (int(points[k, 0]), int(points[k, 1])), JOINT_RADIUS, COLOURS_BGR[k], thickness=-1)
    for (first, second), colour in zip(DRAWN_LIMBS, COLOURS_BGR):
        a, b = first - 1, second - 1
        if not (present[a] and present[b]):
            continue
        (xa, ya), (xb, yb) = points[a], points[b]
        centre = (int((xa + xb) / 2), int((ya + yb) / 2))
        length = ((ya - yb) ** 2 + (xa - xb) ** 2) ** 0.5
        angle = math.degrees(math.atan2(ya - yb, xa - xb))
        outline = cv2.ellipse2Poly(centre, (int(length / 2), LIMB_HALF_WIDTH), int(angle), 0, 360, 1)
        with_limb = canvas.copy()
        cv2.fillConvexPoly(with_limb, outline, colour)
        canvas = cv2.addWeighted(canvas, LIMB_BLEND[0], with_limb, LIMB_BLEND[1], 0)
    return np.ascontiguousarray(canvas[:, :, ::-1])  # BGR -> RGB


def skeleton_from_file(path: str | Path, size: tuple[int, int] = SKELETON_SIZE) -> np.ndarray:
    """The skeleton image (H, W, 3) uint8 RGB drawn from one keypoint file."""
    return render_skeleton(to_canvas(read_keypoints(path), size), size)
