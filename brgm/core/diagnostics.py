"""Convergence diagnostics of Markov chains: rank-normalised split R-hat and bulk effective sample size.

Both follow Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), "Rank-normalization, folding, and
localization: an improved R-hat for assessing convergence of MCMC": each chain is split in halves, the draws of
all half-chains are replaced by the normal scores of their ranks (``Φ⁻¹((r − 3/8) / (S + 1/4))``), and

- R-hat is the larger of the classic ``√(var⁺ / W)`` of the rank-normalised draws and of their folded version
  ``|θ − median(θ)|`` (``W`` the mean within-chain variance, ``var⁺ = (n − 1)/n · W + B/n``);
- the bulk ESS is ``M·n / τ`` of the rank-normalised draws, ``τ = −1 + 2 Σ_t ρ̂_t`` with the combined
  autocorrelation ``ρ̂_t = 1 − (W − mean_m γ̂_{t,m}) / var⁺`` truncated by Geyer's initial monotone sequence
  (sums of pairs ``ρ̂_{2k} + ρ̂_{2k+1}`` while positive, made non-increasing).

Every function works on ``[draws, chains, *rest]`` tensors at once over ``rest`` (for instance every latent
coordinate of every item).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


def split_chains(draws: torch.Tensor) -> torch.Tensor:
    """``[n, M, *rest]`` -> ``[n // 2, 2M, *rest]``: each chain's first and second halves as separate chains (the
    middle draw dropped when ``n`` is odd)."""
    half = draws.shape[0] // 2
    return torch.cat([draws[:half], draws[draws.shape[0] - half :]], dim=1)


def rank_normalise(draws: torch.Tensor) -> torch.Tensor:
    """``[n, M, *rest]`` -> the normal scores of the ranks over all ``n·M`` draws of each ``rest`` entry, ties given
    their average rank (so a chain that never moved, or a constant entry, has no spread to score)."""
    n, m = draws.shape[:2]
    flat = draws.reshape(n * m, -1).double()
    values, order = flat.sort(dim=0)
    new_value = torch.ones_like(values, dtype=torch.bool)
    new_value[1:] = values[1:] != values[:-1]
    columns = flat.shape[1]
    group = new_value.long().cumsum(dim=0) - 1 + torch.arange(columns, device=flat.device) * (n * m)
    position = torch.arange(1, n * m + 1, dtype=torch.float64, device=flat.device)[:, None].expand_as(values)
    total = torch.zeros(columns * n * m, dtype=torch.float64, device=flat.device)
    count = torch.zeros_like(total)
    total.index_add_(0, group.flatten(), position.flatten())
    count.index_add_(0, group.flatten(), torch.ones_like(position).flatten())
    ranks = torch.empty_like(values).scatter_(0, order, (total / count.clamp_min(1))[group])
    scores = torch.special.ndtri((ranks - 0.375) / (n * m + 0.25))
    return scores.reshape(draws.shape)


def _variances(draws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[n, M, *rest]`` -> (W, var⁺), each ``[*rest]``."""
    n = draws.shape[0]
    within = draws.var(dim=0, correction=1).mean(dim=0)
    between = n * draws.mean(dim=0).var(dim=0, correction=1)
    return within, (n - 1) / n * within + between / n


def _rhat(draws: torch.Tensor) -> torch.Tensor:
    within, var_plus = _variances(draws)
    return (var_plus / within).sqrt()


def split_rhat(draws: torch.Tensor) -> torch.Tensor:
    """``[n, M, *rest]`` (``n ≥ 4``, ``M ≥ 1``) -> rank-normalised split R-hat ``[*rest]`` (≥ ~1; below 1.01 is
    the published criterion for mixed chains). A constant entry gives NaN."""
    split = split_chains(draws.double())
    folded = (split - split.flatten(0, 1).median(dim=0).values).abs()
    return torch.maximum(_rhat(rank_normalise(split)), _rhat(rank_normalise(folded)))


def autocovariance(draws: torch.Tensor) -> torch.Tensor:
    """``[n, M, *rest]`` -> the biased autocovariances ``γ̂_t`` of each chain, ``[n, M, *rest]`` (lags 0..n−1),
    by FFT with zero padding."""
    n = draws.shape[0]
    centred = draws - draws.mean(dim=0, keepdim=True)
    spectrum = torch.fft.rfft(centred, n=2 * n, dim=0)
    return torch.fft.irfft(spectrum.abs().square(), n=2 * n, dim=0)[:n] / n


def bulk_ess(draws: torch.Tensor) -> torch.Tensor:
    """``[n, M, *rest]`` (``n ≥ 4``) -> the bulk effective sample size ``[*rest]`` of the rank-normalised split
    chains, in (0, n·M·log10(n·M)] (Stan's cap on antithetic chains)."""
    split = rank_normalise(split_chains(draws.double()))
    n, m = split.shape[:2]
    within, var_plus = _variances(split)
    acov = autocovariance(split).mean(dim=1) * n / (n - 1)  # mean over chains, unbiased at lag 0
    rho = 1 - (within - acov) / var_plus
    rho[0] = 1.0
    pairs = rho[: n - n % 2].reshape(n // 2, 2, *rho.shape[1:]).sum(dim=1)
    positive = (pairs > 0).to(pairs.dtype).cumprod(dim=0)
    monotone = pairs.clamp_min(0).cummin(dim=0).values * positive
    tau = (-1 + 2 * monotone.sum(dim=0)).clamp_min(1 / torch.log10(torch.tensor(float(n * m))))
    return n * m / tau


# ----------------------------------------------------------------------------- calibration of uncertainty


def ranks(x: torch.Tensor) -> torch.Tensor:
    """``[n]`` -> the ranks ``1..n`` of the entries (float64), ties given their average rank."""
    values, order = x.flatten().double().sort()
    _, group, counts = torch.unique_consecutive(values, return_inverse=True, return_counts=True)
    starts = counts.cumsum(0) - counts
    result = torch.empty_like(values)
    result[order] = (starts + (counts + 1) / 2).double()[group]
    return result


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """The Spearman rank correlation of two tensors of ``n`` entries (ties averaged), in [−1, 1]; NaN when
    either is constant."""
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.square().sum() * rb.square().sum()).sqrt())


def expected_spearman(draws: torch.Tensor) -> float:
    """``[S, n]`` (``S ≥ 3`` posterior draws of ``n`` entries) -> the Spearman(std, |mean − truth|) a truth drawn
    from this very posterior would score: the mean over ``k`` of Spearman(std, |draw k − mean|) of the other
    ``S − 1`` draws (NaN where those are constant). It bounds what the rank correlation can say about these draws:
    where the std hardly varies over the entries it is near 0 however right the posterior is, so a low
    Spearman there is no evidence against the std."""
    if draws.ndim != 2 or draws.shape[0] < 3:
        raise ValueError(f"expected_spearman needs [S >= 3, n] draws, got {tuple(draws.shape)}")
    s = draws.shape[0]
    centred = draws.double() - draws.double().mean(dim=0)  # leave-one-out moments from sums, no S copies
    total, squares = centred.sum(dim=0), centred.square().sum(dim=0)
    rhos = []
    for draw in centred:
        mean = (total - draw) / (s - 1)
        variance = ((squares - draw.square() - (s - 1) * mean.square()) / (s - 2)).clamp_min(0)
        rhos.append(spearman(variance.sqrt(), (draw - mean).abs()))
    return float(torch.tensor(rhos, dtype=torch.float64).mean())


def coverage(mean: torch.Tensor, std: torch.Tensor, truth: torch.Tensor, level: float) -> float:
    """The fraction of entries of ``truth`` inside the central ``level`` Gaussian interval
    ``mean ± Φ⁻¹((1 + level)/2)·std`` (``std`` of 0: a point, covering only an exact ``mean``)."""
    z = float(torch.special.ndtri(torch.tensor(0.5 + level / 2, dtype=torch.float64)))
    error = (mean.double() - truth.double()).abs()
    return float((error <= z * std.double()).double().mean())


def sparsification_error(std: torch.Tensor, error: torch.Tensor, fractions: int = 100) -> float:
    """AUSE (RMSE): over the removed fractions ``f = 0, 1/fractions, …``, the mean of the RMSE of the entries left
    after removing the fraction ``f`` with the largest ``std``, less the same removing the largest ``|error|``
    (the oracle); 0 for a perfect ranking, in the units of ``error``."""
    squared = error.flatten().double().square()
    n = squared.numel()
    kept = n - (torch.arange(fractions, dtype=torch.float64) / fractions * n).long()

    def curve(order: torch.Tensor) -> torch.Tensor:
        tail = squared[order].flip(0).cumsum(0).flip(0)  # tail[i] = Σ of the entries from the i-th on
        return (tail[n - kept] / kept).sqrt()

    by_std = curve(std.flatten().argsort(descending=True, stable=True))
    oracle = curve(squared.argsort(descending=True, stable=True))
    return float((by_std - oracle).mean())


#: intensities (in [0, 1]) above which a pixel of the truth is foreground (tissue, not background)
FOREGROUND = 0.02
#: the central interval levels whose coverage :func:`calibration_metrics` reports
COVERAGE_LEVELS = (0.9, 0.5)


def level_name(level: float) -> str:
    """``0.9`` -> ``"90"``: how a level names its coverage (``coverage90``) and keys a calibration's factors."""
    return str(round(level * 100))


def foreground(truth: torch.Tensor) -> torch.Tensor:
    """The foreground of an intensity image in [0, 1]: the entries of ``truth`` above :data:`FOREGROUND`."""
    return truth > FOREGROUND


def calibration_metrics(
    mean: torch.Tensor,
    std: torch.Tensor,
    truth: torch.Tensor,
    mask: torch.Tensor | None = None,
    factors: Mapping[str, float] | None = None,
    samples: torch.Tensor | None = None,
) -> dict[str, dict[str, float | None]]:
    """How honest a posterior std is against the truth, ``{"foreground": {...}, "all": {...}}``: per region, the
    coverage of the central 90 % and 50 % Gaussian intervals (``coverage90``, ``coverage50``; each with the std
    times ``factors["90"]``, ``factors["50"]`` when given), Spearman(std, |mean − truth|) (None where either is
    constant), with the posterior's draws ``samples [S, *truth.shape]`` (``S ≥ 3``) the Spearman a truth drawn
    from them would score (``spearman_expected``, :func:`expected_spearman`), and the region's share of the
    pixels. The foreground is ``mask`` or, by default,
    :func:`foreground` of the truth: the background, where error and std are both 0, would otherwise lift the
    figures of every map."""
    regions = {
        "foreground": foreground(truth) if mask is None else mask.bool(),
        "all": torch.ones_like(truth, dtype=torch.bool),
    }
    error = (mean - truth).abs()
    metrics: dict[str, dict[str, float | None]] = {}
    for name, region in regions.items():
        row: dict[str, float | None] = {"pixels": float(region.double().mean())}
        if region.any():
            m, s, t = mean[region], std[region], truth[region]
            for level in COVERAGE_LEVELS:
                k = 1.0 if factors is None else factors[level_name(level)]
                row[f"coverage{level_name(level)}"] = coverage(m, k * s, t, level)
            rho = spearman(s, error[region])
            row["spearman"] = None if rho != rho else rho
            if samples is not None and samples.shape[0] >= 3:
                expected = expected_spearman(samples[:, region])
                row["spearman_expected"] = None if expected != expected else expected
        metrics[name] = row
    return metrics
