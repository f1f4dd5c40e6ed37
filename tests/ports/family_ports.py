"""Hand-written ports of some layer-family models (pipeline/tf_worker/families.py): GRU gate order, a
bidirectional GRU, multi-head attention with LayerNorm, grouped and depthwise convolutions."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class GRUNet(nn.Module):
    """family.gru: GRU(12) -> Dense(3)."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(6, 12, batch_first=True)
        self.fc = nn.Linear(12, 3)

    def forward(self, x):
        out, _ = self.gru(x)
        return self.fc(out[:, -1])


class BidirectionalGRUNet(nn.Module):
    """family.bidirectional_gru: Bidirectional(GRU(8)) -> Dense(3)."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(6, 8, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        _, last = self.gru(x)  # (directions, batch, 8): each direction's final state
        return self.fc(torch.cat([last[0], last[1]], dim=1))


class TransformerBlock(nn.Module):
    """family.transformer_block: self-attention, LayerNorm, a GELU MLP, LayerNorm, pooling, Dense(4)."""

    def __init__(self):
        super().__init__()
        self.attention = nn.MultiheadAttention(32, 4, batch_first=True)
        self.norm1 = nn.LayerNorm(32, eps=1e-3)
        self.hidden = nn.Linear(32, 64)
        self.back = nn.Linear(64, 32)
        self.norm2 = nn.LayerNorm(32, eps=1e-3)
        self.head = nn.Linear(32, 4)

    def forward(self, tokens):
        attended, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        x = self.norm1(tokens + attended)
        x = self.norm2(x + self.back(F.gelu(self.hidden(x))))
        return self.head(x.mean(dim=1))


class GroupedConvNet(nn.Module):
    """family.grouped_conv: Conv2D(16, 3, groups=4, 'same') -> DepthwiseConv2D(3, 'same') -> Dense(5)."""

    def __init__(self):
        super().__init__()
        self.grouped = nn.Conv2d(8, 16, 3, padding=1, groups=4)
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.head = nn.Linear(16, 5)

    def forward(self, image):
        return self.head(self.depthwise(self.grouped(image)).mean(dim=(2, 3)))
