"""The porting guide's mistaken ports, kept so that tests can check `verify` names each mistake."""

import torch
import torch.nn as nn


class CNNWithConv2D(nn.Module):
    """The guide's CNN as written: torch.nn has no Conv2D (it is Conv2d)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2D(1, 32, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc = nn.Linear(14 * 14 * 32, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        return self.fc(torch.flatten(x, 1))


class CNNPadded(nn.Module):
    """The guide's CNN with the class name fixed: padding=1 where Keras used 'valid', so the Linear
    takes 14*14*32 features and the Keras Dense kernel is (13*13*32, 10)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc = nn.Linear(14 * 14 * 32, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        return torch.softmax(self.fc(torch.flatten(x, 1)), dim=1)


class LSTMLastIndex(nn.Module):
    """A batch-first LSTM whose forward reads `lstm_out[-1]`: the last sample, not the last step."""

    def __init__(self, input_size=8, hidden_size=64, output_size=1):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        lstm_out, _ = self.lstm(x)
        return self.fc(lstm_out[-1, :, :])


class LSTMGuide(nn.Module):
    """The guide's LSTM as written: no batch_first, so Keras's (batch, time, features) input is read
    as (time, batch, features), and `lstm_out[-1]` is then the last sample."""

    def __init__(self, input_size=8, hidden_size=64, output_size=1):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        lstm_out, _ = self.lstm(x)
        return self.fc(lstm_out[-1, :, :])


class CNNWithoutReLU(nn.Module):
    """The CNN with Keras's conv activation (Conv2D(activation="relu")) forgotten."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc = nn.Linear(13 * 13 * 32, 10)

    def forward(self, x):
        x = self.pool(self.conv1(x))
        return torch.softmax(self.fc(torch.flatten(x, 1)), dim=1)


class CNNSwappedLinear(nn.Module):
    """nn.Linear(out, in) where nn.Linear(in, out) was meant."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc = nn.Linear(10, 13 * 13 * 32)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        return torch.softmax(self.fc(torch.flatten(x, 1)), dim=1)


class BidirectionalThenBackwardLSTM(nn.Module):
    """family.bidirectional_lstm, whose second LSTM runs backwards (go_backwards=True) in Keras: a
    forward-running nn.LSTM does not compute it."""

    def __init__(self):
        super().__init__()
        self.both = nn.LSTM(6, 8, batch_first=True, bidirectional=True)
        self.last = nn.LSTM(16, 8, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x, _ = self.both(x)
        x, _ = self.last(x)
        return self.fc(x[:, -1])
