"""tganv2: TGANv2 ("Train Sparsely, Generate Densely") video GANs with multiple subsampling layers.

Public API::

    cfg = tganv2.load_preset("ucf101-192", overrides=["train.batch=16"])
    G = tganv2.build_generator(cfg)        # training mode: list of level videos (N_l, 3, T_l, H_l, W_l)
    D = tganv2.build_discriminator(cfg)    # list of level videos -> (ΣN_l, 1)
    tganv2.losses.generator_loss(D(G(G.make_z(8))))
    G = tganv2.load_generator("runs/x/generator.safetensors")  # eval mode, ready to sample
    snap = tganv2.load_snapshot("runs/x/generator.safetensors")  # .model, .config, .weights (raw | ema)
"""

from . import losses
from .config import Config, build_discriminator, build_generator, level_shapes, load_config, load_preset
from .snapshot import LoadedGenerator, load_generator, load_snapshot, save_generator

__version__ = "0.1.0"

__all__ = [
    "Config",
    "LoadedGenerator",
    "build_discriminator",
    "build_generator",
    "level_shapes",
    "load_config",
    "load_generator",
    "load_preset",
    "load_snapshot",
    "losses",
    "save_generator",
]
