"""Image-quality metrics on batches of images or volumes ``[N, C, *spatial]``, one value per item: brgm's public
face of :mod:`brgm.core.metrics`, where they are defined and documented."""

from brgm.core.metrics import fastmri_psnr, fastmri_ssim, lpips, nmse, psnr, rmse, ssim

__all__ = ["fastmri_psnr", "fastmri_ssim", "lpips", "nmse", "psnr", "rmse", "ssim"]
