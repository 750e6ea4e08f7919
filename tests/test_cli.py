"""The segzoo command line."""

from __future__ import annotations

import json
import subprocess
import sys

from segzoo.cli import main
from segzoo.cli.commands import count_flops


def test_list_models(capsys):
    assert main(["list", "deeplabv3_*"]) == 0
    out = capsys.readouterr().out.split()
    assert out == ["deeplabv3_mnv2", "deeplabv3_mnv3", "deeplabv3_r101", "deeplabv3_r50"]


def test_list_decoders_and_encoders(capsys):
    assert main(["list", "--decoders"]) == 0
    assert {"unet", "fcn", "deeplabv3", "deeplabv3plus", "swin_unet"} <= set(capsys.readouterr().out.split())
    assert main(["list", "--encoders", "convnext_t*"]) == 0
    assert "convnext_tiny" in capsys.readouterr().out.split()


def test_info_json(capsys):
    assert main(["info", "unet_mnv2", "--size", "64", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"] > 1e6 and info["gflops_64x64"] > 0
    assert info["config"]["encoder"]["name"] == "mobilenetv2_100" and info["source"] == "segzoo"


def test_flops_scale_with_area():
    import segzoo

    model = segzoo.create("unet_r18", encoder="test_resnet")
    small, large = count_flops(model, 64, 64), count_flops(model, 128, 128)
    assert 3.5 < large / small < 4.5


def test_unknown_name_is_an_error_with_suggestion():
    out = subprocess.run([sys.executable, "-m", "segzoo", "info", "unet_r43"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 2
    assert "unet_r34" in out.stderr and "Traceback" not in out.stderr
