"""StyleGAN2 (NVIDIA stylegan2-ada-pytorch layout) and 3D-StyleGAN in plain PyTorch."""

from brgm.plugins.generators.stylegan2.config import MappingConfig, SynthesisConfig
from brgm.plugins.generators.stylegan2.generator import StyleGAN2Generator

__all__ = ["MappingConfig", "StyleGAN2Generator", "SynthesisConfig"]
