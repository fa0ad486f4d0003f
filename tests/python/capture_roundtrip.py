"""Captures two small modules with tools/capture_torch.py for tests/test_capture.cpp.

usage: capture_roundtrip.py OUT_DIR
Writes OUT_DIR/net.model.h5 + net.recording.h5 (a conv/linear net with activations) and exits 0;
then tries a module capture_torch cannot map and prints its error (exit 0 when it raised).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import capture_torch  # noqa: E402


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, (3, 2), stride=2, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 3 * 3, 5)

    def forward(self, x):
        y = F.relu(self.bn(self.conv(x)))
        y = self.drop(torch.flatten(y, 1))
        return torch.softmax(self.fc(y), dim=-1)


class Unmappable(nn.Module):
    def forward(self, x):
        return torch.cumsum(x, dim=1)


def main(out):
    torch.manual_seed(0)
    net = Net().eval()
    batches = [(torch.randn(3, 2, 5, 5),) for _ in range(2)]
    capture_torch.capture(net, batches, os.path.join(out, "net.model.h5"),
                          os.path.join(out, "net.recording.h5"), input_names=["x"],
                          record_activations=True, name="net")
    try:
        capture_torch.capture(Unmappable(), [(torch.randn(2, 3),)],
                              os.path.join(out, "bad.model.h5"), os.path.join(out, "bad.recording.h5"))
    except capture_torch.CaptureError as e:
        print("UNMAPPABLE:", e)
        return 0
    print("UNMAPPABLE: no error raised")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
