"""Figures of a reconstruction, drawn with matplotlib's Agg canvas (no pyplot, no global state).

- :func:`comparison_figure`: columns measurement, baseline, reconstruction and, given a ground truth, the truth
  and the error map ``|reconstruction − truth|``; one row for a 2D image, three for a volume (its axial, coronal
  and sagittal mid-slices). k-space is shown as log-magnitude (root-sum-of-squares over coils).
- :func:`picture`: one such column, for a measurement on its own.
- :func:`energy_figure`: every energy term against the step (log y when all values are positive), with the
  learning rate on a second axis.

Volumes are ``[C, D, H, W]`` in RAS+ order (see :mod:`brgm.core.io`); their slices are shown with superior up
(anterior up in axial slices) and the patient's right on the right (neurological convention).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from brgm.core.io.files import atomic_path

PANEL_INCHES = 2.6
VIEWS_3D = ("axial", "coronal", "sagittal")


def save_figure(fig: Figure, path: str | Path) -> None:
    """Write ``fig`` as a PNG at 100 dpi, atomically (see :func:`brgm.core.io.files.atomic_path`)."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)


def _as_array(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _displayable(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """``x [C, *spatial]`` -> ``[*spatial]`` gray or ``[*spatial, 3]`` RGB, and whether it is k-space
    (then log10-magnitude, root-sum-of-squares over channels)."""
    if np.iscomplexobj(x):
        magnitude = np.sqrt((np.abs(x) ** 2).sum(axis=0))
        return np.log10(magnitude + 1e-9 * max(float(magnitude.max()), 1e-30)), True
    if x.shape[0] == 3:
        return np.clip(np.moveaxis(x, 0, -1), 0.0, 1.0), False
    return x.mean(axis=0), False


def _slices(image: np.ndarray, spatial_dims: int) -> list[np.ndarray]:
    """The panel(s) of one column: the image itself, or a volume's axial, coronal and sagittal mid-slices
    transposed so that ``origin="lower"`` puts anterior/superior up."""
    if spatial_dims == 2:
        return [image]
    d, h, w = (s // 2 for s in image.shape[:3])
    views = (image[:, :, w], image[:, h, :], image[d, :, :])
    return [np.swapaxes(v, 0, 1) for v in views]


def _grid(
    path: Path,
    columns: Sequence[tuple[str, torch.Tensor | np.ndarray]],
    *,
    error_column: str | Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Panels of ``columns`` (label, ``[C, *spatial]``); the ``error_column`` label(s) get a colour map from 0
    with a colour bar, the others gray in [0, 1] (k-space: log-magnitude)."""
    scaled = {error_column} if isinstance(error_column, str) else set(error_column or ())
    arrays = [_as_array(x) for _, x in columns]
    spatial_dims = arrays[0].ndim - 1
    rows = 1 if spatial_dims == 2 else 3
    size = (PANEL_INCHES * len(columns), PANEL_INCHES * rows + (0.4 if title else 0.0))
    fig = Figure(figsize=size, layout="constrained")  # keeps the title clear of the panel titles
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, len(columns), squeeze=False)
    for col, ((label, _), array) in enumerate(zip(columns, arrays, strict=True)):
        image, is_kspace = _displayable(array)
        for row, panel in enumerate(_slices(image, spatial_dims)):
            ax = axes[row, col]
            origin = "upper" if spatial_dims == 2 else "lower"
            if label in scaled:
                shown = ax.imshow(panel, cmap="inferno", vmin=0.0, origin=origin, interpolation="nearest")
                fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
            elif is_kspace:
                ax.imshow(panel, cmap="gray", origin=origin, interpolation="nearest")
            else:
                ax.imshow(panel, cmap="gray", vmin=0.0, vmax=1.0, origin=origin, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(label + ("\n(log-magnitude)" if is_kspace else ""), fontsize=9)
            if col == 0 and rows > 1:
                ax.set_ylabel(VIEWS_3D[row], fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
    return path


def _with_metrics(label: str, metrics: Mapping[str, float] | None) -> str:
    if not metrics:
        return label
    parts = []
    if "psnr" in metrics:
        parts.append(f"PSNR {metrics['psnr']:.2f} dB")
    if "ssim" in metrics:
        parts.append(f"SSIM {metrics['ssim']:.3f}")
    return label + ("\n" + ", ".join(parts) if parts else "")


def comparison_figure(
    path: str | Path,
    *,
    measurement: torch.Tensor | np.ndarray,
    baseline: torch.Tensor | np.ndarray,
    recon: torch.Tensor | np.ndarray,
    truth: torch.Tensor | np.ndarray | None = None,
    metrics: Mapping[str, Mapping[str, float]] | None = None,
    title: str | None = None,
) -> Path:
    """Write the comparison figure of one item to ``path`` (PNG).

    Args:
        measurement: ``[C, *spatial]`` real image or complex k-space (its grid may differ from the others').
        baseline, recon, truth: ``[C, *spatial]`` intensities in [0, 1].
        metrics: ``{"recon": {"psnr": ..., "ssim": ...}, "baseline": {...}}``, shown in the titles.
    """
    metrics = metrics or {}
    columns = [
        ("measurement", measurement),
        (_with_metrics("baseline", metrics.get("baseline")), baseline),
        (_with_metrics("reconstruction", metrics.get("recon")), recon),
    ]
    error_label = None
    if truth is not None:
        error = np.abs(_as_array(recon) - _as_array(truth)).mean(axis=0, keepdims=True)
        error_label = "|reconstruction − truth|"
        columns += [("truth", truth), (error_label, error)]
    return _grid(Path(path), columns, error_column=error_label, title=title)


#: half-width of the central 90 % interval (intensity units, range [0, 1]) above which the uncertainty figure
#: marks a pixel as not to be trusted
UNTRUSTED = 0.05


def uncertainty_figure(
    path: str | Path,
    *,
    mean: torch.Tensor | np.ndarray,
    std: torch.Tensor | np.ndarray,
    samples: torch.Tensor | np.ndarray,
    truth: torch.Tensor | np.ndarray | None = None,
    shown: int = 3,
    title: str | None = None,
) -> Path:
    """Write a sampler's figure of one item to ``path`` (PNG): the posterior mean, the per-pixel standard
    deviation and ``|mean − truth|`` (each on its own colour scale from 0), the pixels not to trust (white where
    the central 90 % interval ``mean ± 1.645·std`` is wider than ±:data:`UNTRUSTED`), and the first ``shown``
    samples.

    Args:
        mean, std, truth: ``[C, *spatial]`` (intensities in [0, 1]; the std in the same units).
        samples: ``[S, C, *spatial]``.
    """
    columns: list[tuple[str, torch.Tensor | np.ndarray]] = [
        ("posterior mean", mean),
        ("standard deviation", std),
    ]
    scaled = ["standard deviation"]
    if truth is not None:
        error = np.abs(_as_array(mean) - _as_array(truth))
        columns.append(("|mean − truth|", error))
        scaled.append("|mean − truth|")
    columns.append(
        (f"don't trust (90 % > ±{UNTRUSTED:g})", (1.645 * _as_array(std) > UNTRUSTED).astype(np.float32))
    )
    columns += [(f"sample {i + 1}", samples[i]) for i in range(min(shown, len(samples)))]
    return _grid(Path(path), columns, error_column=scaled, title=title)


def picture(path: str | Path, x: torch.Tensor | np.ndarray, label: str = "measurement") -> Path:
    """Write a picture of one ``[C, *spatial]`` image, volume (three mid-slices) or k-space to ``path``."""
    return _grid(Path(path), [(label, x)])


def energy_figure(path: str | Path, history: Mapping[str, torch.Tensor], index: int = 0) -> Path:
    """Plot item ``index``'s energies (``"total"``, ``"like.*"`` and ``"prior.*"`` of ``history``, each
    ``[steps, N]``) and the learning rate ``"lr"`` ``[steps]`` when there is one; a sampler's other records
    (acceptance, ELBO, diagnostics) are not energies and are left out."""
    fig = Figure(figsize=(6.4, 4.0))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    curves = {
        name: _as_array(values)[:, index].astype(np.float64)
        for name, values in history.items()
        if name == "total" or name.startswith(("like.", "prior."))
    }
    steps = np.arange(1, len(next(iter(curves.values()))) + 1)
    for name, values in curves.items():
        ax.plot(steps, values, label=name, linewidth=2.0 if name == "total" else 1.2)
    everything = np.concatenate(list(curves.values()))
    everything = everything[
        ~np.isnan(everything)
    ]  # NaN: a term a stage left out (a sampler's staged MAP start)
    ax.set_yscale("log" if np.all(everything > 0) else "symlog")
    ax.set_xlabel("step")
    ax.set_ylabel("energy")
    ax.grid(True, which="major", alpha=0.3)
    if "lr" in history:
        lr_axis = ax.twinx()
        lr_axis.plot(steps, _as_array(history["lr"]), color="0.5", linestyle="--", linewidth=1.0)
        lr_axis.set_ylabel("learning rate (dashed)", color="0.4")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    save_figure(fig, path)
    return Path(path)
