"""MobileNetV2's port with the stem's Keras padding='same', stride 2 written as torch padding=1: the
output has the right shape, but torch pads (1, 1) where Keras pads (0, 1), so every window shifts."""

import torch.nn as nn
import torch.nn.functional as F
from mobilenet_v2_port import MobileNetV2  # a sibling file: verify puts this folder on sys.path


class SymmetricStem(MobileNetV2):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False)

    def forward(self, x):
        x = F.relu6(self.stem_bn(self.stem(x)))
        x = self.blocks(x)
        x = F.relu6(self.head_bn(self.head(x)))
        return self.classifier(x.mean(dim=(2, 3)))
