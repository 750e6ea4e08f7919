"""Dilated depthwise convolutions as tap sums: the same output as the convolution, used by the fast path only where
it measures faster, and refused for convolutions it does not compute."""

from __future__ import annotations

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

import segzoo
from conftest import randomize_bn
from segzoo.core.errors import InvalidValueError
from segzoo.inference import dilated_depthwise
from segzoo.inference.dilated_depthwise import TapSumDepthwiseConv, use_tap_sums, why_not_tap_sum


def _depthwise(channels: int, kernel: tuple[int, int], dilation: tuple[int, int], bias: bool) -> nn.Conv2d:
    padding = tuple(d * (k - 1) // 2 for d, k in zip(dilation, kernel))
    return nn.Conv2d(channels, channels, kernel, padding=padding, dilation=dilation, groups=channels, bias=bias)


@settings(max_examples=40, deadline=None)
@given(channels=st.integers(1, 6), kernel=st.sampled_from([(3, 3), (5, 5), (3, 5), (1, 3)]),
       dilation=st.tuples(st.integers(1, 40), st.integers(1, 40)), height=st.integers(1, 30),
       width=st.integers(1, 30), bias=st.booleans(), channels_last=st.booleans())
@example(3, (3, 3), (12, 12), 13, 13, True, True)  # the outer taps reach exactly one row and column
@example(3, (3, 3), (12, 12), 12, 13, False, False)  # ... and, across rows, only padding
@example(2, (5, 5), (6, 7), 24, 29, True, False)  # a 5 x 5 kernel's second ring partly inside
def test_tap_sums_equal_the_convolution_for_any_dilation_and_map_size(channels, kernel, dilation, height, width,
                                                                     bias, channels_last):
    if dilation == (1, 1):
        dilation = (2, 1)
    conv = _depthwise(channels, kernel, dilation, bias).eval()
    x = torch.randn(2, channels, height, width)
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected, got = conv(x), TapSumDepthwiseConv(conv)(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert got.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@pytest.mark.parametrize("conv,named", [
    (nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2), "groups 2"),
    (nn.Conv2d(4, 8, 3, padding=2, dilation=2, groups=4), "out_channels 8"),
    (nn.Conv2d(4, 4, 3, stride=2, padding=2, dilation=2, groups=4), "stride (2, 2)"),
    (nn.Conv2d(4, 4, 3, padding=1, groups=4), "not dilated"),
    (nn.Conv2d(4, 4, 3, padding=1, dilation=2, groups=4), "padding (1, 1)"),
    (nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=4, padding_mode="reflect"), "'reflect'"),
    (nn.Conv2d(4, 4, 4, padding=3, dilation=2, groups=4), "even side"),
    (nn.Conv2d(4, 4, 3, padding=(2, 1), dilation=2, groups=4), "padding (2, 1)"),
    (nn.Conv1d(4, 4, 3, padding=2, dilation=2, groups=4), "Conv1d"),
])
def test_convolutions_tap_sums_do_not_compute_are_refused_naming_why(conv, named):
    assert named in why_not_tap_sum(conv)
    with pytest.raises(InvalidValueError, match="cannot replace") as error:
        TapSumDepthwiseConv(conv)
    assert named in str(error.value)


def test_wrong_input_channels_name_the_shape_expected():
    taps = TapSumDepthwiseConv(_depthwise(4, (3, 3), (2, 2), True))
    with pytest.raises(InvalidValueError, match=r"expects \(N, 4, H, W\) input, got \(1, 3, 8, 8\)"):
        taps(torch.randn(1, 3, 8, 8))


def test_the_probe_answers_for_both_memory_formats_and_leaves_the_random_stream_alone():
    torch.manual_seed(7)
    before = torch.random.get_rng_state()
    probe = dilated_depthwise.faster_as_tap_sums.__wrapped__  # measured here, not answered from the cache
    answers = {probe((3, 3), (4, 4), cl) for cl in (True, False)}
    assert answers <= {True, False}
    assert torch.equal(torch.random.get_rng_state(), before)


def test_use_tap_sums_replaces_only_the_dilations_measured_faster(monkeypatch):
    asked = []

    def faster(kernel_size, dilation, channels_last):
        asked.append((kernel_size, dilation, channels_last))
        return dilation[0] >= 6

    monkeypatch.setattr(dilated_depthwise, "faster_as_tap_sums", faster)
    model = nn.Sequential(_depthwise(3, (3, 3), (12, 12), False), _depthwise(3, (3, 3), (2, 2), True),
                          _depthwise(3, (3, 3), (12, 12), True), nn.Conv2d(3, 3, 3, padding=6, dilation=6))
    assert use_tap_sums(model, channels_last=True) == 2
    assert [type(m).__name__ for m in model] == ["TapSumDepthwiseConv", "Conv2d", "TapSumDepthwiseConv", "Conv2d"]
    assert sorted(asked) == [((3, 3), (2, 2), True), ((3, 3), (12, 12), True)]  # each kind measured once


def test_fast_path_with_tap_sums_gives_the_models_logits(monkeypatch):
    monkeypatch.setattr(dilated_depthwise, "faster_as_tap_sums", lambda *a, **k: True)
    model = randomize_bn(segzoo.create("deeplabv3plus_r50", num_classes=5, encoder="test_resnet"))
    fast = segzoo.optimize(model)
    assert fast.tap_sum_convs == 3  # the separable ASPP's rates 6, 12, 18
    assert not any(isinstance(m, TapSumDepthwiseConv) for m in model.modules())  # the original is untouched
    x = torch.randn(2, 3, 96, 80)
    with torch.no_grad():
        ref = model.eval()(x)
    assert (fast(x) - ref).abs().max() <= 1e-3


def test_fast_path_keeps_pytorchs_kernels_where_tap_sums_are_not_faster(monkeypatch):
    monkeypatch.setattr(dilated_depthwise, "faster_as_tap_sums", lambda *a, **k: False)
    model = segzoo.create("deeplabv3plus_r50", num_classes=5, encoder="test_resnet")
    assert segzoo.optimize(model).tap_sum_convs == 0
