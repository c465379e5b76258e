"""Built-in presets: the two BRGM reference implementations, converted to brgm's [0, 1] intensities.

Sources (research notes, brgm.md §3.2, §3.3, §9): BRGM-TF is ``razvanmarinescu/brgm`` (``projector.py``, the
paper-era code) and BRGM-PyTorch is ``razvanmarinescu/brgm-pytorch`` (``bayesmap_recon.py``).
"""

from __future__ import annotations

from brgm import hookimpl
from brgm.core.presets import Preset

#: BRGM computed the pixel term on [0, 255] images: λ·mean((255·Δ)²) = 255²·λ·mean(Δ²) for Δ in [0, 1] units
INTENSITY_SCALE = 255.0
#: λ_pix of both references, in their [0, 255] units
BRGM_PIXEL_WEIGHT = 0.001


def pixel_weight_01(weight_0_255: float) -> float:
    """A pixel-L2 weight for [0, 255] images converted to [0, 1] images (×255² = ×65025)."""
    return weight_0_255 * INTENSITY_SCALE**2


ADAM = {"solver.lr": 0.1, "solver.betas": (0.9, 0.999), "solver.eps": 1e-8}

BRGM_TF_NO_PERCEPTUAL = {
    "like.pixel.weight": pixel_weight_01(BRGM_PIXEL_WEIGHT),
    "like.pixel.reduction": "mean",
    "prior.gaussian.weight": 100.0,
    "prior.gaussian.reduction": "mean",
    "prior.gaussian.n_samples": 10000,
    "prior.gaussian.seed": 111,
    "prior.colinear.weight": 3.0,
    "prior.colinear.reduction": "mean",
    "solver.steps": 5000,
    **ADAM,
    "solver.schedule": "brgm",
    "solver.rampup": 0.05,
    "solver.rampdown": 0.25,
    "solver.init_jitter": 0.01,
    "fwd.downsample.method": "area",
    "fwd.mask.fill": 1.0,
}
BRGM_TF = {
    **BRGM_TF_NO_PERCEPTUAL,
    "like.perceptual.weight": 1.0,
    "like.perceptual.net": "vgg",
    "like.perceptual.resize": "tf",
    "like.perceptual.reduction": "lpips",
}
BRGM_PT = {
    "like.pixel.weight": pixel_weight_01(BRGM_PIXEL_WEIGHT),
    "like.pixel.reduction": "mean",
    "like.perceptual.weight": 1e7,
    "like.perceptual.net": "vgg",
    "like.perceptual.resize": "pt",
    "like.perceptual.reduction": "mean",
    "prior.gaussian.weight": 100.0,
    "prior.gaussian.reduction": "mean",
    "prior.gaussian.n_samples": 10000,
    "prior.gaussian.seed": 123,
    "prior.colinear.weight": 0.1,
    "prior.colinear.reduction": "sum",
    "solver.steps": 501,
    **ADAM,
    "solver.schedule": "constant",
    "solver.rampup": 0.0,
    "solver.rampdown": 0.0,
    "solver.init_jitter": 0.0,
    "fwd.downsample.method": "bicubic",
    "fwd.mask.fill": 1 / INTENSITY_SCALE,
}

PIXEL_NOTE = (
    "like.pixel.weight = 0.001·255² = 65.025 with like.pixel.reduction=mean: BRGM's pixel term is "
    "0.001·mean((f(x̂) − y)²) on [0, 255] images; on brgm's [0, 1] images the same energy is 65025·0.001·mean(Δ²). "
    "Against brgm's calibrated energy (Σ(f(x̂) − y)²/(2σ²), Gaussian prior ½Σ((w − μ)/σ_w)²), BRGM's weights "
    "amount to a noise level σ² = M/(2·65.025) per element for M measured elements and a prior scaled by "
    "200/(num_ws·w_dim)."
)
PRIOR_NOTE = (
    "prior.gaussian: weight 100 on mean(((w − μ)/σ)²) over layers × dims (reduction=mean), μ and scalar σ from {n} mapping "
    "samples (the reference drew z with numpy RandomState({seed}); prior.gaussian.seed passes {seed} to "
    "G.w_stats, which matches the reference's samples only if the generator draws z the same way)."
)
TF_NOTES = " ".join(
    [
        PIXEL_NOTE,
        PRIOR_NOTE.format(n=10000, seed=111),
        "prior.colinear: 3·mean over all num_ws² layer pairs of |1 − cos| (reduction=mean).",
        "like.perceptual: weight 1 on LPIPS-VGG v0.1 (reduction=lpips); TF used NVIDIA's "
        "vgg16_zhang_perceptual.pkl, assumed (unverified) equal to lpips's VGG v0.1; images larger than 256 are "
        "box-downsampled to 256, smaller ones compared at native size (resize=tf). Intensity-independent: "
        "LPIPS sees the same [-1, 1] images either way.",
        "Solver: 5000 Adam steps (β 0.9/0.999, ε 1e-8), lr 0.1 with a 5% linear ramp-up and a 25% cosine "
        "ramp-down (schedule=brgm); W+ starts at μ plus one scalar N(0, (0.01σ)²) draw (init_jitter=0.01; the "
        "reference seeded it with 3, brgm with the run's seed).",
        "fwd.downsample.method=area: TF super-resolution averages factor×factor blocks.",
        "fwd.mask.fill=1.0: TF inpainting fills missing pixels with 1.0 in its [-1, 1] range (white), which is "
        "(1 + 1)/2 = 1.0 in [0, 1].",
        "Not reproduced: TF fed the generator's stored noise constants (noise maps effectively frozen, "
        "noise_reg 0), which is brgm's noise_mode='const'.",
    ]
)
PT_NOTES = " ".join(
    [
        PIXEL_NOTE,
        PRIOR_NOTE.format(n=10000, seed=123),
        "prior.colinear: weight 0.1 on the sum over all num_ws² layer pairs of |1 − cos| (reduction=sum); "
        "the reference raises it to 1 for super-resolution above ×16 (preset brgm-pt-sr16).",
        "like.perceptual: weight 1e7 on mean((Φ(A(f(x̂))) − Φ(A(y)))²) where Φ is NVIDIA's flattened VGG16-LPIPS "
        "feature vector, whose squared differences sum to LPIPS: the term is 1e7·LPIPS/D with D the vector "
        "length, represented as reduction=mean (LPIPS divided by the number of trunk activations, "
        "D = 7,995,392 at 256², so 1e7/D ≈ 1.25·LPIPS). That NVIDIA's TorchScript vector has exactly this "
        "length is unverified. A is an area resize to 256×256, always (resize=pt).",
        "Solver: 501 Adam steps (β 0.9/0.999, ε 1e-8) at a constant lr 0.1 (schedule=constant; rampup and "
        "rampdown 0); W+ starts at μ tiled, no jitter (init_jitter=0). The reference's --seed 303 is the "
        "run's seed in brgm.",
        "fwd.downsample.method=bicubic: torch's bicubic interpolation without antialiasing, as the reference.",
        "fwd.mask.fill=1/255: PyTorch inpainting fills missing pixels with 1.0 in its [0, 255] range (almost "
        "black), which is 1/255 in [0, 1].",
        "Not reproduced: the reference re-draws the generator's noise buffers from N(0, 1) per image and "
        "freezes them; brgm keeps the generator's constants (noise_mode='const').",
    ]
)


@hookimpl
def register_presets() -> list[Preset]:
    return [
        Preset(
            name="brgm-tf",
            description="BRGM's TensorFlow reference (paper-era): pixel + LPIPS, Gaussian + colinearity priors",
            select={"like": "pixel+perceptual", "prior": "gaussian+colinear"},
            values=BRGM_TF,
            notes=TF_NOTES,
        ),
        Preset(
            name="brgm-tf-noperc",
            description="brgm-tf without the perceptual term (no ImageNet weights needed)",
            select={"like": "pixel", "prior": "gaussian+colinear"},
            values=BRGM_TF_NO_PERCEPTUAL,
            notes=TF_NOTES + " This variant drops like.perceptual, so it deviates from the reference.",
        ),
        Preset(
            name="brgm-pt",
            description="BRGM's PyTorch reference: pixel + LPIPS (mean), Gaussian + summed colinearity priors",
            select={"like": "pixel+perceptual", "prior": "gaussian+colinear"},
            values=BRGM_PT,
            notes=PT_NOTES,
        ),
        Preset(
            name="brgm-pt-sr16",
            description="brgm-pt for super-resolution above ×16 (colinearity weight 1 instead of 0.1)",
            select={"like": "pixel+perceptual", "prior": "gaussian+colinear"},
            values={**BRGM_PT, "prior.colinear.weight": 1.0},
            notes=PT_NOTES
            + " brgm-pt-sr16: the reference sets λ_c = 1 when recontype is super-resolution and the factor "
            "is above 16; use this preset with fwd=downsample fwd.factor=32 or 64.",
        ),
    ]
