"""A port of tests/build_models.py's two_inputs.keras whose forward computes `score` before `logits`:
the Dense layers pair by call order wrongly, and the config's `weight_mapping` pins them."""

import torch
import torch.nn as nn


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.tokens = nn.Linear(6, 4)
        self.score = nn.Linear(8, 1)
        self.logits = nn.Linear(8, 3)

    def forward(self, zeta, alpha):
        pooled = torch.relu(self.conv(alpha)).mean(dim=(2, 3))
        joined = torch.cat([pooled, torch.tanh(self.tokens(zeta))], dim=1)
        score = torch.sigmoid(self.score(joined))
        return self.logits(joined), score
