"""Interoperability with the official Chainer TGANv2 code (reference.md Appendix A)."""

from .chainer import (
    chainer_generator_key,
    chainer_generator_keys,
    convert_chainer_generator,
    load_chainer_generator,
)

__all__ = [
    "chainer_generator_key",
    "chainer_generator_keys",
    "convert_chainer_generator",
    "load_chainer_generator",
]
