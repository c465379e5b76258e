"""The files a reconstruction run writes for each item, in the input's format (see :func:`write_outputs`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import numpy as np
import torch
from safetensors.torch import save_file

from brgm.core import io, metrics
from brgm.core.calibration import Calibration
from brgm.core.diagnostics import calibration_metrics
from brgm.core.io import figures
from brgm.core.io.files import atomic_path
from brgm.core.io.formats.meta import AS_STORED
from brgm.core.operators import ForwardModel

if TYPE_CHECKING:
    from brgm.core.problem import Problem
    from brgm.core.solver import Result

METRICS = ("psnr", "ssim", "rmse", "nmse")


def _item(t: torch.Tensor, index: int, ndim: int) -> torch.Tensor:
    """One item ``[*shape]`` (``ndim`` dims) of ``t``, given as the item itself, with a batch axis of 1, or
    as the whole batch."""
    if t.ndim == ndim:
        return t
    return t[index] if t.shape[0] > 1 else t[0]


def observed_mask(forward_model: ForwardModel, shape: tuple[int, ...]) -> torch.Tensor | None:
    """The observed-pixel mask ``[1, 1, *spatial]`` of an inpainting model (alone or followed by noise), for
    images of ``shape`` ``[N, C, *spatial]``; None for any other forward model."""
    members = forward_model.components
    masks = [op for op in members if hasattr(op, "observed")]
    if len(masks) != 1 or any(op is not masks[0] and not op.is_noise for op in members):
        return None
    return masks[0].observed(shape, "cpu")


def item_metrics(image: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """``{"psnr", "ssim", "rmse", "nmse"}`` of one image ``[C, *spatial]`` against the truth, via
    :mod:`brgm.core.metrics`."""
    pred, target = image[None].double(), truth[None].double()
    return {name: float(getattr(metrics, name)(pred, target)[0]) for name in METRICS}


def _save_array(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as float32 ``.npy`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array.astype(np.float32))
    return path


def posterior_outputs(
    out: Path,
    name: str,
    result: Result,
    index: int,
    meta: io.Meta,
    truth: torch.Tensor | None,
    calibration: Calibration | None = None,
) -> tuple[list[Path], dict[str, object]]:
    """A sampler's files for item ``index`` (see :func:`write_outputs`) and its ``"uncertainty"`` metrics: the
    mean and largest std (intensities in [0, 1]; the calibrated std when there is a ``calibration``), the number
    of samples; when the truth is known, the coverage of the central 90 % and 50 % Gaussian intervals
    ``mean ± z·std``, Spearman(std, |mean − truth|) of the raw std and the Spearman a truth drawn from the
    posterior would score (``spearman_expected``) over the foreground and over all pixels
    (:func:`~brgm.core.diagnostics.calibration_metrics`), and the same with each level's factor under
    ``"calibrated"``; ``"calibration"`` (its factors and file, or None); the sampler's diagnostics (``rhat``,
    ``ess``, the final ``elbo``) when its history has them (None for NaN), and ``collapsed`` (the draws were all
    one image)."""
    mean, raw, samples = result.image[index], result.std[index], result.samples[:, index]
    std = raw if calibration is None else raw * calibration.std_factor
    ext = io.output_suffix(meta)
    intensity = meta.intensity or AS_STORED
    # a standard deviation has the window's scale but no offset (and no inversion)
    spread = attrs.evolve(intensity, low=0.0, high=intensity.span, invert=False, clip=False)
    spread_meta = attrs.evolve(meta, intensity=spread)
    files = []
    if ext != ".npy":  # an .npy input's format is the array itself, written below
        files += [
            io.save(out / f"{name}_mean{ext}", mean, meta),
            io.save(out / f"{name}_std{ext}", std, spread_meta),
        ]
        if calibration is not None:
            files.append(io.save(out / f"{name}_std_raw{ext}", raw, spread_meta))
    files += [
        _save_array(out / f"{name}_mean.npy", intensity.from_unit(mean.numpy())),
        _save_array(out / f"{name}_std.npy", spread.from_unit(std.numpy())),
        _save_array(out / f"{name}_samples.npy", intensity.from_unit(samples.numpy())),
    ]
    if calibration is not None:
        files.append(_save_array(out / f"{name}_std_raw.npy", spread.from_unit(raw.numpy())))
    uncertainty: dict[str, object] = {
        "mean_std": float(std.mean()),
        "max_std": float(std.max()),
        "samples": float(len(samples)),
        "calibration": None if calibration is None else calibration.describe(),
    }
    if truth is not None:
        uncertainty |= calibration_metrics(mean, raw, truth, samples=samples)
        if calibration is not None:
            uncertainty["calibrated"] = calibration_metrics(mean, raw, truth, factors=calibration.factors)
    for key in ("rhat", "ess", "elbo"):
        if key in result.history:
            value = float(result.history[key][-1, index])
            uncertainty[key] = None if value != value else value  # NaN: chains that never moved
    if "collapsed" in result.history:
        uncertainty["collapsed"] = bool(result.history["collapsed"][-1, index])
    files.append(out / f"{name}_uncertainty.png")
    figures.uncertainty_figure(
        files[-1], mean=mean, std=std, samples=samples, truth=truth, title=f"{name}: posterior"
    )
    return files, uncertainty


@attrs.frozen
class Outputs:
    """What :func:`write_outputs` wrote for one item.

    Attributes:
        files: the paths written (a DICOM series is one directory).
        metrics: ``{"recon": {"psnr", "ssim", "rmse", "nmse"}, "baseline": {...}}`` against the truth (floats;
            PSNR in dB), with ``"generator"`` too when the reconstruction was refined for consistency, or ``{}``
            without a truth; and ``"uncertainty"`` for a sampler's result (see :func:`posterior_outputs`).
    """

    files: list[Path]
    metrics: dict[str, dict[str, float]]


def write_outputs(
    out_dir: str | Path,
    *,
    name: str,
    problem: Problem,
    measurement: torch.Tensor,
    result: Result,
    index: int,
    meta: io.Meta,
    truth: torch.Tensor | None = None,
    calibration: Calibration | None = None,
) -> Outputs:
    """Write the outputs of item ``index`` of ``result`` into ``out_dir`` and return its metrics.

    Files (``EXT`` is the input's format, from ``meta``; a DICOM series is a directory):

    - ``{name}_recon.EXT``, ``{name}_baseline.EXT``: the reconstruction and the forward model's naive inverse
      (clamped to [0, 1]) on the generator's grid, with ``meta``'s geometry (so volumes overlay the input);
    - ``{name}_generator.EXT``: when the reconstruction was refined for data consistency (``result.generated``,
      see :mod:`brgm.core.consistency`), the solver's own image, in the generator's range; ``_recon`` is then the
      consistent one;
    - ``{name}_recon_input_grid.EXT``: for a volume that was fitted to the generator's grid
      (:func:`brgm.core.io.fit_to_grid`), the reconstruction resampled back onto the input's grid and affine;
    - ``{name}_measurement.EXT`` (``.npy`` for complex k-space);
    - ``{name}_merged.EXT`` for inpainting: the observed pixels of the measurement, the reconstruction elsewhere;
    - ``{name}_latents.safetensors``: ``ws [1, num_ws, w_dim]``, and ``noise.0``, ``noise.1``, ... ``[1, 1, *shape]``
      when the noise inputs were optimised (``G.synthesis(ws, noises=[noise.0, ...])`` renders the recon);
    - ``{name}_comparison.png`` (see :func:`brgm.core.io.figures.comparison_figure`) and ``{name}_energy.png``;
    - for a sampler's result (``result.std`` set): ``{name}_mean.EXT`` (the posterior mean, the same image as
      ``_recon``) and ``{name}_std.EXT`` (the per-pixel posterior standard deviation in the image's intensity
      scale, so it overlays the input; an 8-bit format rounds it to 1/255), float32 arrays in the input's
      intensity units ``{name}_mean.npy``, ``{name}_std.npy`` ``[C, *spatial]`` and ``{name}_samples.npy``
      ``[S, C, *spatial]``, and ``{name}_uncertainty.png`` (see
      :func:`brgm.core.io.figures.uncertainty_figure`); with a ``calibration``, ``_std`` is the calibrated std
      (the raw one times the 90 % factor, so ``mean ± 1.645·std`` is the calibrated 90 % interval) and
      ``{name}_std_raw.EXT`` / ``.npy`` the sampler's own.

    Args:
        out_dir: the run's output directory (created if needed).
        name: the item's file stem.
        problem: the composed problem (its forward model and generator).
        measurement: this item's measurement ``[*measurement_shape]``, or the batch ``[N, *measurement_shape]``.
        result: the reconstruction of the batch the item belongs to.
        index: the item's position in ``result``'s batch.
        meta: the item's :class:`~brgm.core.io.Meta` on the generator's grid (as returned by ``fit_to_grid``),
            or the measurement's when the input was a measurement.
        truth: the ground truth ``[C, *spatial]`` (or ``[1, C, *spatial]``, or the batch) on the generator's
            grid, in [0, 1]; enables the metrics and the truth and error columns.
        calibration: factors on a sampler's std (:mod:`brgm.core.calibration`), or None for the raw std.

    Returns:
        The files written and the metrics against ``truth`` (see :class:`Outputs`). Every file is written
        atomically (a temporary name, then a rename).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    recon = result.image[index]
    baseline = result.baseline[index].clamp(0.0, 1.0)
    y = _item(measurement.detach().cpu(), index, len(problem.measurement_shape))
    ext = io.output_suffix(meta)

    files = [
        io.save(out / f"{name}_recon{ext}", recon, meta),
        io.save(out / f"{name}_baseline{ext}", baseline, meta),
        io.save(out / f"{name}_measurement{io.output_suffix(meta, is_complex=y.is_complex())}", y, meta),
    ]
    generated = None if result.generated is None else result.generated[index].clamp(0.0, 1.0)
    if generated is not None:
        files.append(io.save(out / f"{name}_generator{ext}", generated, meta))
    if meta.fit is not None and meta.spatial_dims == 3:
        native, source = io.back_to_input_grid(recon[None], meta)
        files.append(io.save(out / f"{name}_recon_input_grid{io.output_suffix(source)}", native[0], source))
    observed = observed_mask(problem.forward_model, (1, *recon.shape))
    if observed is not None:
        files.append(io.save(out / f"{name}_merged{ext}", torch.where(observed[0], y, recon), meta))
    latents = {"ws": result.ws[index : index + 1]}
    for i, noise in enumerate(result.noises or []):
        latents[f"noise.{i}"] = noise[index : index + 1]
    files.append(out / f"{name}_latents.safetensors")
    with atomic_path(files[-1]) as tmp:
        save_file({key: t.contiguous() for key, t in latents.items()}, tmp)

    metrics: dict[str, dict[str, float]] = {}
    if truth is not None:
        target = _item(truth.detach().cpu(), index, recon.ndim).to(recon.dtype)
        metrics = {"recon": item_metrics(recon, target), "baseline": item_metrics(baseline, target)}
        if generated is not None:
            metrics["generator"] = item_metrics(generated, target)
    files.append(out / f"{name}_comparison.png")
    figures.comparison_figure(
        files[-1],
        measurement=y,
        baseline=baseline,
        recon=recon,
        truth=None if truth is None else target,
        metrics=metrics,
        title=f"{name}: {problem.forward_model.name}",
    )
    files.append(figures.energy_figure(out / f"{name}_energy.png", result.history, index))
    if result.std is not None and result.samples is not None:
        target = None if truth is None else _item(truth.detach().cpu(), index, recon.ndim).to(recon.dtype)
        posterior_files, uncertainty = posterior_outputs(out, name, result, index, meta, target, calibration)
        files += posterior_files
        metrics["uncertainty"] = uncertainty
    return Outputs(files=files, metrics=metrics)
