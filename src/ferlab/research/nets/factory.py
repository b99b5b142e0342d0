"""The registry of architectures and the model factory (timm-style ``create``).

Every model takes (N, 1, 48, 48) float input normalised by Eq. (27) and returns (N, 7) logits
(a model that works at a larger ``input_size`` upsamples inside itself, so the pipeline, the
data and the ONNX twins never change),
and exposes ``backbone``/``head`` (for staged unfreezing) and ``gradcam_layer``.
"""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from ...errors import FerlabError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = fn
        return fn
    return deco


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create(name: str, *, pretrained: str | None = "none", **kwargs: Any) -> nn.Module:
    """Build architecture ``name``. ``pretrained``: ``none``, ``imagenet`` or a weights path."""
    if name not in _REGISTRY:
        raise FerlabError(f"unknown model {name!r}; choose one of {', '.join(list_models())}")
    return _REGISTRY[name](pretrained=pretrained or "none", **kwargs)


def create_from_config(model_cfg: dict[str, Any]) -> nn.Module:
    cfg = dict(model_cfg)
    return create(cfg.pop("name"), **cfg)


def _resnet(arch: str) -> Callable[..., nn.Module]:
    def build(pretrained: str = "none", head: Any = (256,), dropout: Any = (0.5, 0.25),
              in_chans: int = 1, stem: str = "thesis", **extra: Any) -> nn.Module:
        from .resnet import FerResNet, load_imagenet

        _no_extra(arch, extra)
        model = FerResNet(arch, in_chans=in_chans, stem=stem, head=head, dropout=dropout)
        if pretrained != "none":
            load_imagenet(model, arch, None if pretrained == "imagenet" else pretrained)
        return model
    return build


def _no_extra(name: str, extra: dict[str, Any]) -> None:
    if extra:
        raise FerlabError(f"model {name} does not take option(s) {', '.join(extra)}")


register("resnet18")(_resnet("resnet18"))
register("resnet50")(_resnet("resnet50"))


@register("efficientnet_lite0")
def _efficientnet_lite0(pretrained: str = "none", head: Any = (256,), dropout: Any = (0.5, 0.25),
                        in_chans: int = 1, stem: str = "thesis", stem_stride: int | None = None,
                        drop_connect: float = 0.2, input_size: int = 48, **extra: Any) -> nn.Module:
    """``stem`` keeps the ResNet vocabulary of the config: ``thesis`` = the FER stem (1-channel,
    stride 1, more resolution at 48x48), ``original`` = ImageNet's stride 2; ``stem_stride``
    overrides the stride alone; ``input_size`` > 48 upsamples the 48 px face inside the network."""
    from .efficientnet_lite import FerEfficientNetLite0, load_imagenet

    _no_extra("efficientnet_lite0", extra)
    if stem not in ("thesis", "original"):
        raise FerlabError(f"unknown stem {stem!r}; choose thesis or original")
    stride = stem_stride if stem_stride is not None else (1 if stem == "thesis" else 2)
    model = FerEfficientNetLite0(in_chans=in_chans, stem_stride=stride, drop_connect=drop_connect,
                                 head=head, dropout=dropout, input_size=input_size)
    if pretrained != "none":
        load_imagenet(model, None if pretrained == "imagenet" else pretrained)
    return model


@register("mobilenet_v2")
def _mobilenet_v2(pretrained: str = "none", head: Any = (256,), dropout: Any = (0.5, 0.25),
                  in_chans: int = 1, input_size: int = 96, width_mult: float = 1.0, **extra: Any) -> nn.Module:
    """torchvision's MobileNetV2 (ImageNet stem, stride 2) fed the 48 px face upsampled to
    ``input_size`` inside the network (nets/mobilenet_v2.py says why)."""
    from .mobilenet_v2 import FerMobileNetV2, load_imagenet

    extra.pop("stem", None)  # the ImageNet stem is the only one; "thesis" in a base config is ignored
    _no_extra("mobilenet_v2", extra)
    model = FerMobileNetV2(input_size=input_size, in_chans=in_chans, width_mult=width_mult, head=head, dropout=dropout)
    if pretrained != "none":
        if width_mult != 1.0:
            raise FerlabError("ImageNet weights exist for mobilenet_v2 width_mult 1.0 only")
        load_imagenet(model, None if pretrained == "imagenet" else pretrained)
    return model


@register("scratch_cnn")
def _scratch(pretrained: str = "none", **extra: Any) -> nn.Module:
    from .scratch_cnn import ScratchCNN

    extra = {k: v for k, v in extra.items() if k not in ("head", "dropout", "in_chans", "stem")}
    _no_extra("scratch_cnn", extra)
    if pretrained != "none":
        raise FerlabError("scratch_cnn has no pretrained weights; use model.pretrained=none")
    return ScratchCNN()


@register("fernet")
def _fernet(pretrained: str = "none", head: Any = (256,), dropout: Any = (0.5, 0.25),
            widths: Any = (32, 64, 128, 256), depths: Any = (0, 1, 1, 1), **extra: Any) -> nn.Module:
    from .compact import FerNet

    extra = {k: v for k, v in extra.items() if k not in ("in_chans", "stem")}
    _no_extra("fernet", extra)
    if pretrained != "none":
        raise FerlabError("fernet has no ImageNet weights; use model.pretrained=none")
    return FerNet(widths, depths, head, dropout)


