"""Convolutional LSTM (reference.md §1.3; the official ``tgan2/models/conv_lstm.py`` without peepholes).

Two 3×3 convolutions with 4·C outputs: one on the input (with bias), one on the previous hidden state
(without bias). Gate order along channels is i, f, o, g:

    i = σ(x_i + h_i), f = σ(x_f + h_f), o = σ(x_o + h_o)
    c' = f·c + i·tanh(x_g + h_g),   h' = o·tanh(c')

The state starts at zero. There is no special forget-gate bias in the official model; ``forget_bias``
(default 0) optionally initialises the f part of the input bias to a constant (Jozefowicz et al., 2015).
The official unroll's ``stride``/``offset`` options are 1 and 0 in every official config, so every step is
kept here and they do not exist.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .init import lecun_normal_


class ConvLSTMCell(nn.Module):
    def __init__(
        self,
        in_channels: int,  # channels of the input map
        hidden_channels: int,  # channels of h and c
        kernel_size: int = 3,  # square kernel, "same" padding
        forget_bias: float = 0.0,  # initial bias of the forget gate (0 = official)
    ) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        pad = kernel_size // 2
        self.w_x = nn.Conv2d(in_channels, 4 * hidden_channels, kernel_size, padding=pad, bias=True)
        self.w_h = nn.Conv2d(hidden_channels, 4 * hidden_channels, kernel_size, padding=pad, bias=False)
        lecun_normal_(self.w_x)
        lecun_normal_(self.w_h)
        with torch.no_grad():
            self.w_x.bias[hidden_channels : 2 * hidden_channels] = forget_bias  # gate order i, f, o, g

    def forward(self, x: Tensor | None, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """One step. ``x`` is ``(N, C_in, H, W)`` or None for an all-zeros input (only the bias remains)."""
        h, c = state  # (N, C, H, W) each
        gates = self.w_h(h)  # (N, 4C, H, W)
        if x is None:
            gates = gates + self.w_x.bias.view(1, -1, 1, 1)  # w_x(0) is exactly its bias
        else:
            gates = gates + self.w_x(x)
        i, f, o, g = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class ConvLSTM(nn.ModuleList):
    """``n_layers`` stacked cells unrolled over time; fc(z) is the input at t = 0 and zeros after that.

    A ModuleList of cells, so parameters are named ``{k}.w_x`` / ``{k}.w_h`` like Chainer's ``decoder{k}``.
    """

    def __init__(
        self,
        channels: int,  # input = hidden channels (the official model uses the same width)
        n_layers: int = 1,  # stacked cells; layer k's input is layer k−1's output
        kernel_size: int = 3,  # 3 in the official model
        forget_bias: float = 0.0,  # initial forget-gate bias (0 in the official model)
    ) -> None:
        super().__init__(ConvLSTMCell(channels, channels, kernel_size, forget_bias) for _ in range(n_layers))

    def forward(self, x0: Tensor, n_steps: int) -> Tensor:
        """Unroll ``n_steps`` steps. x0: ``(N, C, H, W)``, the input at t = 0 → ``(N, n_steps, C, H, W)``."""
        n, c, hgt, wdt = x0.shape
        states = [(x0.new_zeros(n, c, hgt, wdt), x0.new_zeros(n, c, hgt, wdt)) for _ in self]
        outputs = []
        for t in range(n_steps):
            inp = x0 if t == 0 else None  # z enters through the first input only
            for k, cell in enumerate(self):
                states[k] = cell(inp, states[k])
                inp = states[k][0]
            outputs.append(inp)
        return torch.stack(outputs, dim=1)  # (N, T, C, H, W)
