"""Correct hand-written ports of the porting guide's three demo models (pipeline/tf_worker/builtin_models.py: demo.*).

`tf2torch verify demo.cnn --torch tests/ports/demo_ports.py:CNN` transfers the Keras weights into
them; tests/test_verify.py checks the outputs match TF's.
"""

import torch
import torch.nn as nn


class LinearRegression(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 1)

    def forward(self, x):
        return self.linear(x)


class CNN(nn.Module):
    """Keras: Conv2D(32, 3, 'valid', relu) -> MaxPooling2D(2) -> Flatten -> Dense(10, softmax)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding=0)  # 'valid': 28 -> 26
        self.pool = nn.MaxPool2d(2, 2)  # 26 -> 13
        self.fc = nn.Linear(13 * 13 * 32, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = torch.flatten(x, 1)  # channels-first: verify reorders the Dense kernel's rows to match
        return torch.softmax(self.fc(x), dim=1)


class LSTM(nn.Module):
    """Keras: LSTM(64) (last step only) -> Dense(1), input (batch, 12, 8)."""

    def __init__(self, input_size=8, hidden_size=64, output_size=1):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])  # every sample's last time step
