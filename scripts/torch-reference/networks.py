"""The CIFAR networks dsnn builds, defined the way the CIFAR code DeepShift
trains defines them (akamaster's option-A ResNets for ResNet20..110,
kuangliu's pytorch-cifar for ResNet18, VGG, MobileNetV2 and GoogLeNet).

Written from the published architectures; module names follow those
repositories, so parameter names (``layer1.0.conv1.weight``, ``features.3``,
``pre_layers.0``) are the ones dsnn gives its layers.

Where dsnn differs on purpose it is noted: dsnn pools globally before the
classifier (the reference's fixed-size average pooling equals it at 32x32),
and leaves out a VGG max pooling that would shrink a 1-pixel map. Both
functions below implement dsnn's rule, which is the reference's wherever the
reference runs.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def global_pool(x):
    """Global average pooling to N x C (F.avg_pool2d(x, 4) / AvgPool2d(8) at 32x32)."""
    return x.mean(dim=(2, 3))


# ---------------------------------------------------------------- CIFAR ResNets


class _PadShortcut(nn.Module):
    def __init__(self, pad):
        super().__init__()
        self.pad = pad

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class _BlockA(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = _PadShortcut(cout // 4) if (stride != 1 or cin != cout) else nn.Sequential()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet of depth 6n+2 with option-A shortcuts (ResNet20: n = 3)."""

    def __init__(self, depth, in_channels=3, num_classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        cin, stages = 16, []
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for s in [stride] + [1] * (n - 1):
                blocks.append(_BlockA(cin, cout, s))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(global_pool(out))


# -------------------------------------------------------------------- ResNet18


class _BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, in_channels=3, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for i, (cout, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2))):
            blocks = []
            for s in (stride, 1):
                blocks.append(_BasicBlock(cin, cout, s))
                cin = cout
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(global_pool(out))


# ------------------------------------------------------------------------- VGG

VGG_CFG = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


class _MaybePool(nn.MaxPool2d):
    """MaxPool2d(2, 2), left out on a 1-pixel map (dsnn's rule; the reference fails there)."""

    def __init__(self):
        super().__init__(2, 2)

    def forward(self, x):
        if x.shape[2] < 2 or x.shape[3] < 2:
            return x
        return super().forward(x)


class Vgg(nn.Module):
    def __init__(self, name, in_channels=3, num_classes=10):
        super().__init__()
        layers, cin = [], in_channels
        for item in VGG_CFG[name]:
            if item == "M":
                layers.append(_MaybePool())
            else:
                layers += [nn.Conv2d(cin, item, 3, padding=1), nn.BatchNorm2d(item), nn.ReLU(inplace=True)]
                cin = item
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x):
        return self.classifier(global_pool(self.features(x)))


# ----------------------------------------------------------------- MobileNetV2

# (expansion, out_planes, num_blocks, stride); stride 1 in the second row for CIFAR.
MOBILENETV2_CFG = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                   (6, 160, 3, 2), (6, 320, 1, 1)]


class _InvertedResidual(nn.Module):
    def __init__(self, cin, cout, expansion, stride):
        super().__init__()
        self.stride = stride
        planes = expansion * cin
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, groups=planes, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride == 1 and cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + self.shortcut(x) if self.stride == 1 else out


class MobileNetV2(nn.Module):
    def __init__(self, in_channels=3, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        blocks, cin = [], 32
        for expansion, cout, n, stride in MOBILENETV2_CFG:
            for s in [stride] + [1] * (n - 1):
                blocks.append(_InvertedResidual(cin, cout, expansion, s))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.conv2 = nn.Conv2d(320, 1280, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(1280)
        self.linear = nn.Linear(1280, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = F.relu(self.bn2(self.conv2(out)))
        return self.linear(global_pool(out))


# -------------------------------------------------------------------- GoogLeNet


class _Inception(nn.Module):
    def __init__(self, cin, n1, n3red, n3, n5red, n5, pool_planes):
        super().__init__()
        self.b1 = nn.Sequential(nn.Conv2d(cin, n1, 1), nn.BatchNorm2d(n1), nn.ReLU(True))
        self.b2 = nn.Sequential(nn.Conv2d(cin, n3red, 1), nn.BatchNorm2d(n3red), nn.ReLU(True),
                                nn.Conv2d(n3red, n3, 3, padding=1), nn.BatchNorm2d(n3), nn.ReLU(True))
        self.b3 = nn.Sequential(nn.Conv2d(cin, n5red, 1), nn.BatchNorm2d(n5red), nn.ReLU(True),
                                nn.Conv2d(n5red, n5, 3, padding=1), nn.BatchNorm2d(n5), nn.ReLU(True),
                                nn.Conv2d(n5, n5, 3, padding=1), nn.BatchNorm2d(n5), nn.ReLU(True))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(cin, pool_planes, 1),
                                nn.BatchNorm2d(pool_planes), nn.ReLU(True))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


GOOGLENET_CFG = [
    ("a3", 192, 64, 96, 128, 16, 32, 32), ("b3", 256, 128, 128, 192, 32, 96, 64), "pool",
    ("a4", 480, 192, 96, 208, 16, 48, 64), ("b4", 512, 160, 112, 224, 24, 64, 64),
    ("c4", 512, 128, 128, 256, 24, 64, 64), ("d4", 512, 112, 144, 288, 32, 64, 64),
    ("e4", 528, 256, 160, 320, 32, 128, 128), "pool",
    ("a5", 832, 256, 160, 320, 32, 128, 128), ("b5", 832, 384, 192, 384, 48, 128, 128),
]


class GoogLeNet(nn.Module):
    def __init__(self, in_channels=3, num_classes=10):
        super().__init__()
        self.pre_layers = nn.Sequential(nn.Conv2d(in_channels, 192, 3, padding=1), nn.BatchNorm2d(192),
                                        nn.ReLU(True))
        self.order = []
        for item in GOOGLENET_CFG:
            if item == "pool":
                self.order.append("maxpool")
            else:
                setattr(self, item[0], _Inception(*item[1:]))
                self.order.append(item[0])
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.linear = nn.Linear(1024, num_classes)

    def forward(self, x):
        out = self.pre_layers(x)
        for name in self.order:
            out = getattr(self, name)(out)
        return self.linear(global_pool(out))


def build(name, in_channels=3, num_classes=10):
    """The network dsnn calls `name`."""
    if name.startswith("resnet") and name != "resnet18":
        return CifarResNet(int(name[6:]), in_channels, num_classes)
    return {
        "resnet18": lambda: ResNet18(in_channels, num_classes),
        "vgg11": lambda: Vgg("vgg11", in_channels, num_classes),
        "vgg19": lambda: Vgg("vgg19", in_channels, num_classes),
        "mobilenetv2": lambda: MobileNetV2(in_channels, num_classes),
        "googlenet": lambda: GoogLeNet(in_channels, num_classes),
    }[name]()


NAMES = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet18", "vgg11", "vgg19",
         "mobilenetv2", "googlenet"]

if __name__ == "__main__":
    for n in NAMES:
        m = build(n)
        convs = sum(isinstance(x, nn.Conv2d) for x in m.modules())
        print(n, sum(p.numel() for p in m.parameters()), "convs", convs)
