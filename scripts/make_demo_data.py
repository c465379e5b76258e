"""Build brgm's demo brain dataset: 64×64 skull-stripped axial T1 slices with intensities in [0, 1].

Sources (Debian packages, read offline):
  * Colin27 "ch2bet" (``mricron-data``): one subject, 1 mm isotropic, MNI space, already brain-extracted.
    Its axial brain slices give the training set and the held-out in-subject test set.
  * ITK ``KmeansTest_T1UCharRaw`` with the brain mask ``KmeansTest_T1RawSkullStrip`` (``insighttoolkit5-examples``):
    a second subject, 2×3×2 mm, not registered to Colin27. Its axial brain slices give the out-of-subject test set.

Every slice is resampled onto the same 192 mm square field of view (3 mm pixels, anterior up, patient's right on
the image's left), centred on the bounding box of the volume's brain mask. The output is deterministic.

    python scripts/make_demo_data.py --out build/demo-brain
"""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image
from scipy import ndimage

COLIN_PACKAGE = "mricron-data"
COLIN_BRAIN = Path("/usr/share/mricron/templates/ch2bet.nii.gz")
ITK_PACKAGE = "insighttoolkit5-examples"
ITK_DATA = Path("/usr/share/doc/insighttoolkit5-examples/examples/Data")
ITK_HEAD = ITK_DATA / "KmeansTest_T1UCharRaw.nii.gz"
ITK_MASK = ITK_DATA / "KmeansTest_T1RawSkullStrip.nii.gz"

RESOLUTION = 64  # pixels per side
FOV_MM = 192.0  # side of the square field of view
MIN_AREA_FRACTION = 0.1  # keep axial slices whose brain area is at least this fraction of the largest one
WHITE_PERCENTILE = 99.5  # brain intensity percentile mapped to 1.0
HOLDOUT_EVERY = 8  # every 8th brain slice is held out ...
HOLDOUT_OFFSET = 4  # ... starting at this one (so that the first held-out slice is not the extreme edge)
GUARD = 1  # ... and this many neighbours on each side are dropped from training
SAMPLES = 4  # held-out slices also written as PNG: evenly spaced, the outermost excluded


@dataclass(frozen=True)
class Volume:
    """A brain-only volume in RAS+ voxel order: ``data [X, Y, Z]`` in [0, 1], ``mask [X, Y, Z]``, voxel ``zooms`` in mm."""

    data: np.ndarray
    mask: np.ndarray
    zooms: tuple[float, float, float]
    scale: float  # source intensity mapped to 1.0


def _ras(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    image = nib.as_closest_canonical(nib.load(path))
    zooms = tuple(float(z) for z in image.header.get_zooms()[:3])
    return np.asarray(image.get_fdata(dtype=np.float32)), zooms  # type: ignore[return-value]


def brain_volume(image: np.ndarray, mask: np.ndarray, zooms: tuple[float, float, float]) -> Volume:
    """Mask the image and map the ``WHITE_PERCENTILE`` of brain intensities to 1, clipping to [0, 1]."""
    scale = float(np.percentile(image[mask], WHITE_PERCENTILE))
    data = np.clip(np.where(mask, image, 0.0) / scale, 0.0, 1.0).astype(np.float32)
    return Volume(data=data, mask=mask, zooms=zooms, scale=scale)


def load_colin() -> Volume:
    """Colin27 ch2bet: its non-zero voxels are the BET brain mask (ch2bet equals ch2 inside it)."""
    image, zooms = _ras(COLIN_BRAIN)
    return brain_volume(image, image > 0, zooms)


def load_itk() -> Volume:
    """ITK T1 head masked by ITK's own skull-strip label volume (every non-zero label is brain)."""
    image, zooms = _ras(ITK_HEAD)
    labels, _ = _ras(ITK_MASK)
    return brain_volume(image, labels > 0, zooms)


def brain_slices(volume: Volume) -> np.ndarray:
    """Indices along Z of the axial slices whose brain area is at least ``MIN_AREA_FRACTION`` of the largest."""
    area = volume.mask.sum(axis=(0, 1))
    return np.flatnonzero(area >= MIN_AREA_FRACTION * area.max())


def axial_slices(volume: Volume, z_indices: np.ndarray) -> np.ndarray:
    """Resample axial slices onto the demo grid: ``[N, 1, RESOLUTION, RESOLUTION]`` float32 in [0, 1].

    Each slice is low-pass filtered (Gaussian, sigma = (pixel/voxel - 1) / 2 voxels per axis) and sampled
    bilinearly at the pixel centres of a ``FOV_MM`` square centred on the in-plane bounding box of the brain mask.
    Row 0 is the most anterior row; column 0 is the patient's right.
    """
    pixel = FOV_MM / RESOLUTION
    zx, zy = volume.zooms[:2]
    sigma = (max(0.0, (pixel / zx - 1) / 2), max(0.0, (pixel / zy - 1) / 2))
    inplane = np.argwhere(volume.mask.any(axis=2))
    centre = (inplane.min(axis=0) + inplane.max(axis=0)) / 2 * (zx, zy)  # mm, voxel-index frame
    offsets = (np.arange(RESOLUTION) - (RESOLUTION - 1) / 2) * pixel
    rows, cols = np.meshgrid(offsets, offsets, indexing="ij")
    x = (centre[0] - cols) / zx  # right (high x) at column 0
    y = (centre[1] - rows) / zy  # anterior (high y) at row 0
    out = np.empty((len(z_indices), 1, RESOLUTION, RESOLUTION), dtype=np.float32)
    for i, z in enumerate(z_indices):
        smooth = ndimage.gaussian_filter(volume.data[:, :, z].astype(np.float64), sigma, mode="constant")
        out[i, 0] = ndimage.map_coordinates(smooth, [x, y], order=1, mode="constant", cval=0.0)
    return np.clip(out, 0.0, 1.0)


def split_indices(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (in 0..count-1) of the training and held-out slices: every ``HOLDOUT_EVERY``-th slice is held
    out, and its ``GUARD`` neighbours on each side are used for neither."""
    positions = np.arange(count)
    held_out = positions[positions % HOLDOUT_EVERY == HOLDOUT_OFFSET]
    distance = np.abs(positions[:, None] - held_out[None, :]).min(axis=1)
    return positions[distance > GUARD], held_out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_png16(image: np.ndarray, path: Path) -> None:
    """``image [H, W]`` in [0, 1] as a 16-bit grayscale PNG (value ``round(x · 65535)``)."""
    Image.fromarray(np.round(image * 65535).astype(np.uint16)).save(path)


def sample_positions(count: int) -> np.ndarray:
    """``SAMPLES`` evenly spaced positions in 0..count-1, without the two ends."""
    return np.round(np.linspace(0, count - 1, SAMPLES + 2)[1:-1]).astype(int)


def build(out: Path) -> dict[str, np.ndarray]:
    """Write ``train.npz``, ``test_in_subject.npz``, ``test_out_of_subject.npz``, ``PROVENANCE.md`` and
    ``samples/heldout-<slice_index>.png`` (``SAMPLES`` of the in-subject held-out slices) to ``out``.

    Each npz holds ``images [N, 1, 64, 64]`` float32 in [0, 1] and ``slice_index [N]`` (the axial voxel index in
    the RAS-reoriented source volume). Returns the arrays by split name.
    """
    colin, itk = load_colin(), load_itk()
    colin_z, itk_z = brain_slices(colin), brain_slices(itk)
    train_pos, test_pos = split_indices(len(colin_z))
    splits = {
        "train": (colin, colin_z[train_pos]),
        "test_in_subject": (colin, colin_z[test_pos]),
        "test_out_of_subject": (itk, itk_z),
    }
    out.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name, (volume, z) in splits.items():
        arrays[name] = axial_slices(volume, z)
        np.savez_compressed(out / f"{name}.npz", images=arrays[name], slice_index=z.astype(np.int64))
    (out / "samples").mkdir(exist_ok=True)
    held_out, held_out_z = arrays["test_in_subject"], splits["test_in_subject"][1]
    for i in sample_positions(len(held_out)):
        save_png16(held_out[i, 0], out / "samples" / f"heldout-{held_out_z[i]:03d}.png")
    (out / "PROVENANCE.md").write_text(_provenance(colin, itk, splits))
    return arrays


def _provenance(colin: Volume, itk: Volume, splits: dict[str, tuple[Volume, np.ndarray]]) -> str:
    counts = "\n".join(
        f"| `{name}.npz` | {len(z)} | {z.min()}–{z.max()} |" for name, (_, z) in splits.items()
    )
    pixel = FOV_MM / RESOLUTION
    return f"""# Demo brain dataset: provenance

Built by `scripts/make_demo_data.py` (deterministic; rerun it to reproduce these files bit for bit).

| file | slices | axial voxel indices |
|---|---|---|
{counts}

Each file holds `images` (float32 `[N, 1, {RESOLUTION}, {RESOLUTION}]`, intensities in [0, 1], background 0) and
`slice_index` (axial voxel index in the RAS-reoriented source volume).

## Sources

| split | Debian package | file | sha256 | licence |
|---|---|---|---|---|
| train, test_in_subject | `{COLIN_PACKAGE}` | `{COLIN_BRAIN}` | `{sha256(COLIN_BRAIN)}` | BSD-3-Clause (Chris Rorden; `/usr/share/doc/{COLIN_PACKAGE}/copyright`) |
| test_out_of_subject | `{ITK_PACKAGE}` | `{ITK_HEAD}` | `{sha256(ITK_HEAD)}` | Apache-2.0 (Insight Software Consortium; `/usr/share/doc/{ITK_PACKAGE}/copyright`) |
| test_out_of_subject (mask) | `{ITK_PACKAGE}` | `{ITK_MASK}` | `{sha256(ITK_MASK)}` | Apache-2.0 |

* Colin27 (`ch2bet`) is a single healthy adult's T1 MRI (MNI space, 1 mm isotropic, uint8) that MRIcron ships
  already brain-extracted with FSL BET: it equals MRIcron's `ch2.nii.gz` inside the brain and is 0 outside.
* The ITK head is a different subject's T1 MRI (128×128×62, 2×2×3 mm, not in MNI space). It is skull-stripped
  with ITK's own label volume `KmeansTest_T1RawSkullStrip` shipped beside it (labels 4, 5, 6 are brain; 0 is not).

## Processing

1. Reorient to RAS+ (nibabel `as_closest_canonical`); zero everything outside the brain mask.
2. Scale intensities so that the {WHITE_PERCENTILE}th percentile of brain voxels (over the whole volume) is 1 and clip
   to [0, 1] (Colin27: source value {colin.scale:g}; ITK: {itk.scale:g}).
3. Keep the axial slices whose brain area is at least {MIN_AREA_FRACTION:.0%} of the largest slice's.
4. Resample each slice onto a {FOV_MM:g} mm square field of view, {RESOLUTION}×{RESOLUTION} pixels of {pixel:g} mm,
   centred on the in-plane bounding box of the volume's brain mask: Gaussian anti-aliasing
   (sigma = (pixel/voxel − 1)/2 voxels per axis), then bilinear sampling at pixel centres. Anterior is up and the
   patient's right is on the image's left (radiological convention). No registration between the subjects.
5. Split Colin27's brain slices in inferior-to-superior order: every {HOLDOUT_EVERY}th slice (positions
   {HOLDOUT_OFFSET}, {HOLDOUT_OFFSET + HOLDOUT_EVERY}, …) is held out as `test_in_subject`; its {GUARD} neighbour(s) on each side are
   dropped (adjacent 1 mm slices are nearly identical); the rest is `train`. Every ITK brain slice (2 mm apart)
   is `test_out_of_subject`.
6. `samples/heldout-<slice_index>.png`: {SAMPLES} evenly spaced `test_in_subject` slices (the outermost two
   excluded), as 16-bit grayscale PNG (value = round(intensity · 65535)).

## Limits

One training subject: a generator trained on this data knows Colin27's anatomy only; `test_out_of_subject` measures
how far that carries to another head (other scanner, contrast and slice spacing).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/demo-brain"), help="output directory")
    args = parser.parse_args()
    arrays = build(args.out)
    for name, images in arrays.items():
        print(f"{name}: {images.shape[0]} slices -> {args.out / (name + '.npz')}")


if __name__ == "__main__":
    main()
