"""Residual-aware module (Figure 5 of the paper), plain PyTorch."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

__all__ = ["ResidualAwareModule"]


class ResidualAwareModule(nn.Module):
    """Multi-scale context at constant resolution.

    x (B, C, H, W) → 1×1 conv to C/2 → [3×3 dilated conv, rates (1, 2, 3)] in
    parallel, plus the squeezed features themselves as the residual branch →
    sum → 1×1 conv to ``out_channels`` (C by default, the paper's "restore")
    → (B, out_channels, H, W). The dilated convs are followed by ReLU; the
    squeeze and the restore are linear.

    The paper does not say which convs have an activation. A ReLU on either
    1×1 conv killed whole heads in the tiny runs, because both are narrow:
    once every one of their channels (8 in the squeeze, 16 in the restore of
    a 16-wide stage) was negative for every input, the stage's output was
    spatially constant and no gradient came back; after the last stage that
    left the mask logits constant
    (``benchmarks/results/accuracy_runs_relu_squeeze.jsonl``). Linear 1×1
    projections into narrow widths, as in MobileNetV2's linear
    bottlenecks, cannot die that way: the nonlinearity is the dilated convs'.

    Squeezing first keeps the three 3×3 convs at a quarter of the cost they
    would have on C channels; the residual branch carries the local detail the
    dilated convs blur. A fusion head whose next stage is narrower restores
    straight to that width, so the ×2 upsampling after it moves fewer channels.

    Args:
        channels: C, input channels.
        out_channels: output channels (default C).
        dilations: rates of the parallel 3×3 convs.
        residual: keep the residual branch (Table 4's last row vs. the one above).
    """

    def __init__(self, channels: int, out_channels: Optional[int] = None,
                 dilations: tuple[int, ...] = (1, 2, 3), residual: bool = True) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"channels must be even to halve them, got {channels}")
        hidden = channels // 2
        self.squeeze = nn.Conv2d(channels, hidden, 1)
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(hidden, hidden, 3, padding=d, dilation=d),
                          nn.ReLU(inplace=True))
            for d in dilations)
        self.residual = residual
        self.restore = nn.Conv2d(hidden, out_channels or channels, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise so that the output has about the input's scale.

        He init on fan-in (gain √2 for the convs before a ReLU, 1 for the
        linear ones), and the restore divided by √(number of summed branches).
        The usual fan-out He init multiplied the activations' std by 6-9 at
        every stage of a narrowing head (1.6 → 144 after three in the tiny
        BRefine), and the first mask BCE was ~150 instead of ~0.7.
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                relu = any(m is branch[0] for branch in self.branches)
                nn.init.kaiming_normal_(m.weight, mode="fan_in",
                                        nonlinearity="relu" if relu else "linear")
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.restore.weight /= math.sqrt(len(self.branches) + self.residual)

    def forward(self, x: Tensor) -> Tensor:
        squeezed = self.squeeze(x)
        # one new tensor for the sum, grown in place: an add's backward needs
        # neither input, and at 56×56 each full-size tensor is a page-faulted
        # allocation on CPU
        context = None
        for branch in self.branches:
            out = branch(squeezed)
            if context is None:
                context = squeezed + out if self.residual else out.clone()
            else:
                context += out
        return self.restore(context)
