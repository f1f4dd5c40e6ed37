"""A hand-written port of keras.applications.MobileNetV2 (alpha 1.0, with its classifier), written
from the architecture, not converted. `verify` transfers the 262 Keras variables into it.

What a correct port has to get right: BatchNorm eps=1e-3 and momentum 1 - 0.999; depthwise convs as
groups=channels; and Keras's padding: 'same' with stride 2 on an even size pads one pixel at the end
only (Conv1), and the stride-2 blocks pad (0, 1) explicitly (ZeroPadding2D) before a 'valid' conv.
"""

import torch.nn as nn
import torch.nn.functional as F

BN = {"eps": 1e-3, "momentum": 0.001}
# (expansion, output channels, repeats, first stride), as in the MobileNetV2 paper and Keras.
STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = cin * expansion
        self.expand = nn.Conv2d(cin, hidden, 1, bias=False) if expansion != 1 else None
        self.expand_bn = nn.BatchNorm2d(hidden, **BN) if expansion != 1 else None
        self.stride = stride
        padding = 0 if stride == 2 else 1  # stride 2: padded in forward, as Keras's ZeroPadding2D
        self.depthwise = nn.Conv2d(hidden, hidden, 3, stride, padding, groups=hidden, bias=False)
        self.depthwise_bn = nn.BatchNorm2d(hidden, **BN)
        self.project = nn.Conv2d(hidden, cout, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(cout, **BN)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = x
        if self.expand is not None:
            y = F.relu6(self.expand_bn(self.expand(y)))
        if self.stride == 2:
            y = F.pad(y, (0, 1, 0, 1))  # correct_pad on an even size: (0, 1) on height and width
        y = F.relu6(self.depthwise_bn(self.depthwise(y)))
        y = self.project_bn(self.project(y))
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    def __init__(self, classes: int = 1000):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, stride=2, bias=False)
        self.stem_bn = nn.BatchNorm2d(32, **BN)
        blocks, cin = [], 32
        for expansion, cout, repeats, stride in STAGES:
            for index in range(repeats):
                blocks.append(InvertedResidual(cin, cout, stride if index == 0 else 1, expansion))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(cin, 1280, 1, bias=False)
        self.head_bn = nn.BatchNorm2d(1280, **BN)
        self.classifier = nn.Linear(1280, classes)

    def forward(self, x):
        x = F.pad(x, (0, 1, 0, 1))  # Keras 'same', stride 2, even size: one pixel at the end
        x = F.relu6(self.stem_bn(self.stem(x)))
        x = self.blocks(x)
        x = F.relu6(self.head_bn(self.head(x)))
        return self.classifier(x.mean(dim=(2, 3)))
