"""A port of tests/build_models.py's layer_zoo.keras: one of each remaining layer kind."""

import torch
import torch.nn as nn


class LayerZoo(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.conv1d = nn.Conv1d(8, 6, 3, padding=1)
        self.bilstm = nn.LSTM(6, 5, batch_first=True, bidirectional=True)
        self.stacked = nn.LSTM(10, 4, num_layers=2, batch_first=True)  # Keras lstm_a and lstm_b
        self.rnn = nn.RNN(4, 3, batch_first=True)
        self.depthwise = nn.Conv2d(3, 6, 3, groups=3, bias=False)  # SeparableConv2D, first half
        self.pointwise = nn.Conv2d(6, 5, 1)  # and second half
        # Keras 'same', kernel 3, stride 2 crops the full output's last row and column; torch's usual
        # padding=1, output_padding=1 would crop the first instead (LayerZooShiftedTranspose below).
        self.transpose = nn.ConvTranspose2d(5, 4, 3, stride=2)
        self.crop = True
        self.conv3d = nn.Conv3d(2, 3, 2)
        self.head = nn.Linear(3 + 4 + 3, 2)

    def forward(self, tokens, image, volume):
        x = self.embed(tokens.long())
        x = torch.relu(self.conv1d(x.transpose(1, 2))).transpose(1, 2)
        x, _ = self.bilstm(x)
        x, _ = self.stacked(x)
        _, last = self.rnn(x)
        y = self.transpose(self.pointwise(self.depthwise(image)))
        y = (y[..., :-1, :-1] if self.crop else y).mean(dim=(2, 3))
        z = self.conv3d(volume).mean(dim=(2, 3, 4))
        return self.head(torch.cat([last[-1], y, z], dim=1))


class LayerZooShiftedTranspose(LayerZoo):
    """The common translation of Keras's 'same' Conv2DTranspose: output shape right, values shifted."""

    def __init__(self):
        super().__init__()
        self.transpose = nn.ConvTranspose2d(5, 4, 3, stride=2, padding=1, output_padding=1)
        self.crop = False
