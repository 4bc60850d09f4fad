"""The dr-screen networks: compact strided CNNs with three heads.

DRNet is the shipped v1 model (384 x 384). DRNet2 is the v2 design (issue 16):
a larger input whose first layer is a non-overlapping 4 x 4 "patchify"
convolution, so the finer pixels reach the network (new vessels are under a
pixel wide at 384) at about the cost of today's stem.

Output `probs` [N, 6] = softmax(R grade logits) ++ sigmoid(M1) ++ sigmoid(gradable),
labels r0, r1, r2, r3, m1, gradable. The activations are inside the graph so the
ONNX file's output is what the card's labels say (activation = "none").
"""
import torch
import torch.nn.functional as F
from torch import nn

LABELS = ["r0", "r1", "r2", "r3", "m1", "gradable"]
SIZE = 384
# ImageNet statistics: the card's [input] mean/std (scale 1.0, pixels in 0..1).
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def conv_bn(cin, cout, stride, k=3):
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class HighPass(nn.Module):
    """Fixed (not learned) local-contrast channels: x minus its local mean.

    The local mean is a 16x16 average pool upsampled bilinearly, so the graph stays
    cheap and exports to ONNX AvgPool + Resize. Small dark or bright lesions stand
    out against the slowly varying fundus colour; with these extra channels the
    network learns lesions in one epoch instead of several.
    """

    def __init__(self, k=16, gain=4.0):
        super().__init__()
        self.k, self.gain = k, gain

    def forward(self, x):
        local = F.interpolate(F.avg_pool2d(x, self.k), scale_factor=self.k, mode="bilinear", align_corners=False)
        return torch.cat([x, self.gain * (x - local)], 1)


class DRNet(nn.Module):
    # (out channels, stride) per conv; input 384 -> 12 after five stride-2 convs.
    PLAN = [(16, 2), (24, 2), (48, 2), (48, 1), (96, 2), (96, 1), (192, 2), (192, 1)]

    def __init__(self, width=1.0):
        super().__init__()
        layers, cin = [HighPass()], 6
        for i, (c, s) in enumerate(self.PLAN):
            c = int(c * width)
            layers.append(conv_bn(cin, c, s, k=5 if i == 0 else 3))
            cin = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.maxpool = nn.AdaptiveMaxPool2d(1)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(2 * cin, 6)  # 4 R logits, M1 logit, gradable logit

    def logits(self, x):
        f = self.features(x)
        # Average and max pooling: small lesions are local maxima, quality is global.
        f = torch.cat([self.pool(f), self.maxpool(f)], 1).flatten(1)
        return self.head(self.drop(f))

    def forward(self, x):
        z = self.logits(x)
        return torch.cat([torch.softmax(z[:, :4], 1), torch.sigmoid(z[:, 4:6])], 1)


def macs(model, size=SIZE):
    """Multiply-accumulates of one image (convolutions and the linear head)."""
    total, hw = 0, size
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hw = (hw + 2 * m.padding[0] - m.kernel_size[0]) // m.stride[0] + 1
            total += hw * hw * m.out_channels * m.in_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
        elif isinstance(m, nn.Linear):
            total += m.in_features * m.out_features
    return total


class LocalContrast(nn.Module):
    """Feature map plus its local contrast: cat[f, gain * (f - local mean of f)].

    DRNet's HighPass moved after the (linear) stem: the same idea at 1/16 of
    the pixels, because a linear stem commutes with subtracting a smooth
    local mean. k is in stem pixels (4 stem pixels = 16 input pixels at stride 4).
    """

    def __init__(self, k=4, gain=4.0):
        super().__init__()
        self.k, self.gain = k, gain

    def forward(self, f):
        local = F.interpolate(F.avg_pool2d(f, self.k), scale_factor=self.k, mode="bilinear", align_corners=False)
        return torch.cat([f, self.gain * (f - local)], 1)


class DRNet2(nn.Module):
    """v2: S x S input (default 768), stride-4 patchify stem with local contrast.

    Stem: Conv 4x4 stride 4 (3 -> `stem` channels, linear) on the normalised
    image, then LocalContrast, BN, ReLU: every input pixel is seen once, no
    overlap, so the stem costs S^2/16 * 48 * stem MACs. Then DRNet's plan from
    its second layer on (four more stride-2 convs), so the final map is S/64
    (12 x 12 at 768, as DRNet's at 384).
    Heads as DRNet (avg + max pooling, one linear layer, activations in graph).
    """

    PLAN = [(24, 2), (48, 2), (48, 1), (96, 2), (96, 1), (192, 2), (192, 1)]

    def __init__(self, size=768, stem=16, width=1.0, extra=()):
        super().__init__()
        self.size = size
        self.stem = nn.Conv2d(3, stem, 4, 4, 0, bias=False)
        layers, cin = [LocalContrast(), nn.BatchNorm2d(2 * stem), nn.ReLU(inplace=True)], 2 * stem
        for c, st in list(self.PLAN) + list(extra):
            c = int(c * width)
            layers.append(conv_bn(cin, c, st))
            cin = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.maxpool = nn.AdaptiveMaxPool2d(1)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(2 * cin, 6)

    def logits(self, x):
        f = self.features(self.stem(x))
        f = torch.cat([self.pool(f), self.maxpool(f)], 1).flatten(1)
        return self.head(self.drop(f))

    def forward(self, x):
        z = self.logits(x)
        return torch.cat([torch.softmax(z[:, :4], 1), torch.sigmoid(z[:, 4:6])], 1)


# Architectures by name, for train.py / export.py / speed.py: name -> (constructor, input size).
ARCHS = {
    "drnet384": (lambda: DRNet(), 384),
    "drnet512": (lambda: DRNet(), 512),
    "drnet2-256": (lambda: DRNet2(256), 256),  # tests only (test_resume.sh)
    "drnet2-512": (lambda: DRNet2(512), 512),
    "drnet2-576": (lambda: DRNet2(576), 576),
    "drnet2-640": (lambda: DRNet2(640), 640),
    "drnet2-768": (lambda: DRNet2(768), 768),
    "drnet2-768w": (lambda: DRNet2(768, stem=24), 768),
    "drnet2-1024": (lambda: DRNet2(1024), 1024),
}


def build(arch):
    """(model, input size) for an architecture name of ARCHS."""
    make, size = ARCHS[arch]
    return make(), size
