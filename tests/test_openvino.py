"""OpenVINO, the second CPU backend: fp32 and INT8 (NNCF) IRs of tiny models, checked for parity, carrying their
metadata, run by segzoo predict / eval with tiling and TTA; offline, no GPU."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import segzoo
from segzoo.cli import main

pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")

CLASSES = ["background", "a", "b"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = segzoo.create("unet_r18", encoder="test_resnet", num_classes=3).eval()
    m.meta.class_names = CLASSES
    return m


def test_fp32_ir_has_parity_and_describes_itself(model, tmp_path):
    from segzoo.inference.runtime import OpenVinoModel

    report = segzoo.export(model, str(tmp_path / "m.xml"), example_size=(64, 64))
    assert report["format"] == "openvino" and report["dynamic"]
    assert all(c["max_abs_diff"] <= 1e-3 and c["argmax_agree"] == 1.0 for c in report["checks"])
    assert (tmp_path / "m.bin").is_file() and not list(tmp_path.glob(".*"))
    loaded = OpenVinoModel.load(tmp_path / "m.xml")
    assert loaded.meta.class_names == CLASSES and loaded.num_classes == 3
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    assert (loaded.predict(image) == model.predict(image)).float().mean() > 0.999
    tiled = loaded.predict(image, tile=32, overlap=0.25, tta=("hflip",))
    assert (tiled == model.predict(image, tile=32, overlap=0.25, tta=("hflip",))).float().mean() > 0.999


def test_float_layers_run_in_f32_unless_asked(model, tmp_path):
    """OpenVINO's CPU default is bf16 on bf16-capable CPUs (the Xeon here): an "fp32" IR must not silently run in
    bf16, and an unknown precision is an error naming the choices."""
    from segzoo.core.errors import InvalidValueError
    from segzoo.inference.runtime import OpenVinoModel

    segzoo.export(model, str(tmp_path / "m.xml"), example_size=(64, 64))
    loaded = OpenVinoModel.load(tmp_path / "m.xml")
    assert str(loaded.compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
    with pytest.raises(InvalidValueError, match=r"precision 'int4'.*'f32', 'bf16', 'f16'"):
        OpenVinoModel.load(tmp_path / "m.xml", precision="int4")


def test_int8_ir_from_nncf_agrees_and_runs_from_the_cli(model, tmp_path, capsys):
    images = [np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8) for i in range(4)]
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"c{i}.png")
    assert main(["quantize", str(tmp_path / "m.pt"), str(tmp_path / "q.xml"), "--calibration", str(tmp_path)]) == 2
    model.save_pretrained(str(tmp_path / "w"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["quantize", str(tmp_path / "w"), str(tmp_path / "q.xml"), "--calibration",
                     *[str(tmp_path / f"c{i}.png") for i in range(4)], "--size", "64", "64"])
    out = capsys.readouterr()
    assert code == 0, out.err
    lines = out.out.splitlines()  # NNCF prints progress before the report
    report = json.loads("\n".join(lines[lines.index("{"):]))
    assert report["backend"] == "openvino" and report["class_agreement_on_calibration"] > 0.9
    assert set(report["openvino_ms"]) == {"fp32", "int8"}
    assert main(["predict", str(tmp_path / "c0.png"), "-w", str(tmp_path / "q.xml"), "-o", str(tmp_path / "p"),
                 "--tile", "32", "--tta", "hflip", "--quiet"]) == 0
    capsys.readouterr()
    ids = np.array(Image.open(tmp_path / "p" / "c0.png"))
    assert ids.shape == (64, 64) and ids.max() < 3
    # eval takes the IR like any other model
    (tmp_path / "masks").mkdir()
    (tmp_path / "imgs").mkdir()
    for i, image in enumerate(images[:2]):
        Image.fromarray(image).save(tmp_path / "imgs" / f"c{i}.png")
        Image.fromarray(model.predict(image).numpy().astype(np.uint8)).save(tmp_path / "masks" / f"c{i}.png")
    assert main(["eval", "-w", str(tmp_path / "q.xml"), "--images", str(tmp_path / "imgs"), "--masks",
                 str(tmp_path / "masks"), "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pairs"]["scored"] == 2 and result["pixel_acc"] > 0.9


def _float_convolutions(path) -> set[str]:
    """The IR's convolutions whose weights are a plain float constant (NNCF's quantized ones are dequantized)."""
    import openvino as ov

    ops = ov.Core().read_model(str(path)).get_ordered_ops()
    return {op.get_friendly_name() for op in ops if op.get_type_name() == "Convolution"
            and op.input_value(1).get_node().get_type_name() == "Constant"}


def _convs(module: torch.nn.Module) -> int:
    return sum(isinstance(m, torch.nn.Conv2d) for m in module.modules())


def test_int8_ir_keeps_the_head_and_the_named_modules_in_float(model, tmp_path):
    from segzoo.core.errors import InvalidValueError
    from segzoo.deploy.openvino import quantize_openvino

    images = [np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8) for i in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = quantize_openvino(model, images, tmp_path / "a.xml", example_size=(64, 64))
        kept = quantize_openvino(model, images, tmp_path / "b.xml", example_size=(64, 64),
                                 keep_float=["encoder.model.conv1"])
    head_only, with_stem = _float_convolutions(tmp_path / "a.xml"), _float_convolutions(tmp_path / "b.xml")
    assert len(head_only) == _convs(model.head) and _convs(model) > len(head_only)
    assert head_only < with_stem and len(with_stem - head_only) == _convs(model.encoder.model.conv1)
    assert kept["kept_float_modules"] == ["encoder.model.conv1"] and plain["kept_float_modules"] == []
    with pytest.raises(InvalidValueError, match=r"\['encoder.nope'\] name no weighted layer"):
        quantize_openvino(model, images, tmp_path / "c.xml", example_size=(64, 64), keep_float=["encoder.nope"])
    assert not (tmp_path / "c.xml").exists()


def _int8_weight_peak(path) -> int:
    """The largest |value| of the IR's int8 weight constants: 127 with 8-bit weights, 64 with 7-bit ones."""
    import openvino as ov

    ir = ov.Core().read_model(str(path))
    peaks = [np.abs(op.get_data().astype(np.int32)).max() for op in ir.get_ops()
             if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8]
    return int(max(peaks))


def test_int8_ir_keeps_7_bit_weights_where_its_kernels_lack_vnni(model, tmp_path, monkeypatch):
    """AVX2's u8 x s8 instruction adds pairs of products in 16 bits: without VNNI every layer's weights keep 7 bits
    (NNCF's overflow fix), with VNNI only the first layer's (NNCF's default); ONEDNN_MAX_CPU_ISA capping OpenVINO's
    kernels below VNNI counts as no VNNI. The report says which fix was applied."""
    from segzoo.core.errors import InvalidValueError
    from segzoo.deploy.openvino import overflow_fix_for, quantize_openvino

    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert overflow_fix_for(cpu={"vnni": True}) == "first_layer" and overflow_fix_for(cpu={"vnni": False}) == "enable"
    assert overflow_fix_for("disable", cpu={"vnni": False}) == "disable"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    assert overflow_fix_for(cpu={"vnni": True}) == "enable"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert overflow_fix_for(cpu={"vnni": True}) == "first_layer"
    with pytest.raises(InvalidValueError, match=r"overflow_fix must be one of \['enable', 'first_layer', 'disable'\]"):
        overflow_fix_for("all")
    images = [np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8) for i in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fixed = quantize_openvino(model, images, tmp_path / "a.xml", example_size=(64, 64), overflow_fix="enable")
        full = quantize_openvino(model, images, tmp_path / "b.xml", example_size=(64, 64), overflow_fix="disable")
    assert fixed["overflow_fix"] == "enable" and full["overflow_fix"] == "disable"
    assert _int8_weight_peak(tmp_path / "a.xml") <= 64 < _int8_weight_peak(tmp_path / "b.xml")


def test_openvino_bad_inputs_are_named(model, tmp_path, capsys):
    from segzoo.deploy.openvino import export_openvino
    from segzoo.inference.runtime import OpenVinoModel

    with pytest.raises(ValueError, match=r"NAME\.xml"):
        export_openvino(model, tmp_path / "m.ov")
    (tmp_path / "lonely.xml").write_text("<net/>")
    with pytest.raises(FileNotFoundError, match=r"lonely\.bin"):
        OpenVinoModel.load(tmp_path / "lonely.xml")
    model.save_pretrained(str(tmp_path / "w"))
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "c.png")
    assert main(["quantize", str(tmp_path / "w"), str(tmp_path / "q.onnx"), "--backend", "openvino",
                 "--calibration", str(tmp_path / "c.png")]) == 2
    assert "--backend openvino writes a .xml file" in capsys.readouterr().err
    assert main(["quantize", str(tmp_path / "w"), str(tmp_path / "q.xml"), "--method", "percentile",
                 "--calibration", str(tmp_path / "c.png")]) == 2
    assert "--method, --crop and --weight-type apply to the onnxruntime backend" in capsys.readouterr().err
    assert not (tmp_path / "q.xml").exists()


def test_backend_auto_keeps_the_faster_int8_model_measured_here(model, tmp_path, capsys):
    """--backend auto quantizes with both backends, times them on the same input and keeps only the faster, named
    by its suffix; the report says both latencies."""
    from segzoo.api import load

    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
            tmp_path / f"c{i}.png")
    model.save_pretrained(str(tmp_path / "w"))
    args = ["quantize", str(tmp_path / "w"), "--calibration", str(tmp_path / "c0.png"), str(tmp_path / "c1.png"),
            "--size", "64", "64", "--backend", "auto"]
    assert main([*args[:2], str(tmp_path / "q.onnx"), *args[2:]]) == 2
    assert "give OUT without a suffix" in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([*args[:2], str(tmp_path / "out" / "q"), *args[2:]]) == 0
    out = capsys.readouterr().out
    report = json.loads(out[out.index("{\n"):])
    choice = report["backend_choice"]
    assert set(choice["int8_ms"]) == {"onnxruntime", "openvino"}
    own = report[f"{choice['chosen']}_ms"]  # the kept INT8 against its own runtime's fp32, as the quantizer timed
    assert choice["int8_faster_than_fp32"] == (own["int8"] < own["fp32"])
    assert choice["chosen"] == min(choice["int8_ms"], key=choice["int8_ms"].get) == report["backend"]
    suffix = {"onnxruntime": ".onnx", "openvino": ".xml"}[choice["chosen"]]
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == (["q.bin", "q.xml"] if suffix == ".xml" else ["q.onnx"])
    loaded = load(tmp_path / "out" / f"q{suffix}")
    image = np.random.default_rng(5).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    assert (loaded.predict(image) == model.predict(image)).float().mean() > 0.9


def test_int8_gains_warns_where_the_faster_int8_is_no_faster_than_its_fp32():
    """On an AVX2-only EPYC both runtimes' INT8 ran no faster than their fp32: the choice between two INT8 files
    must not hide that an fp32 export is the faster deployment there."""
    from segzoo.core.errors import InvalidValueError
    from segzoo.deploy.fastest import int8_gains

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert int8_gains({"openvino_ms": {"fp32": 110.0, "int8": 50.0}}, "openvino", (360, 480))
    with pytest.warns(RuntimeWarning, match=r"INT8 is not faster than fp32 on this CPU.*onnxruntime, 116.4 ms\) "
                      r"against onnxruntime's own fp32 graph \(110.6 ms\) at 360x480.*export --fastest"):
        assert not int8_gains({"onnxruntime_ms": {"fp32": 110.6, "int8": 116.4}}, "onnxruntime", (360, 480))
    with pytest.raises(InvalidValueError, match="openvino INT8 report lacks its 'openvino_ms' timing"):
        int8_gains({"onnxruntime_ms": {"fp32": 1.0, "int8": 0.5}}, "openvino", (64, 64))
    with pytest.raises(InvalidValueError, match="lacks its 'openvino_ms' timing"):  # a partial one: no KeyError
        int8_gains({"openvino_ms": {"fp32": 1.0}}, "openvino", (64, 64))


def test_backend_auto_never_replaces_a_file_it_might_write(model, tmp_path, capsys):
    """Which of q.onnx / q.xml / q.bin --backend auto writes is known only after timing: an existing one of them is
    an error before any work, and stays as it was."""
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "c.png")
    model.save_pretrained(str(tmp_path / "w"))
    for name in ("q.onnx", "q.bin"):
        (tmp_path / name).write_bytes(b"mine")
        assert main(["quantize", str(tmp_path / "w"), str(tmp_path / "q"), "--calibration", str(tmp_path / "c.png"),
                     "--backend", "auto"]) == 2
        assert f"{name}' already exists; pass --overwrite" in capsys.readouterr().err
        assert (tmp_path / name).read_bytes() == b"mine" and not (tmp_path / "q.xml").exists()
        (tmp_path / name).unlink()


def test_export_fastest_keeps_the_faster_fp32_file_measured_here(model, tmp_path, capsys):
    """segzoo export --fastest writes both fp32 files (each checked against PyTorch), times them and PyTorch's fast
    path each in its own process, and keeps the faster file under its suffix; the report gives every latency."""
    from segzoo.api import load

    model.save_pretrained(str(tmp_path / "w"))
    args = ["export", str(tmp_path / "w"), str(tmp_path / "out" / "m"), "--size", "64", "64", "--fastest"]
    for wrong in ("m.xml", "m.pt2"):
        assert main([*args[:2], str(tmp_path / wrong), *args[3:]]) == 2
        assert f"give a name without one, got '{tmp_path / wrong}'" in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the fast path may win on this tiny model
        assert main(args) == 0
    out = capsys.readouterr().out
    report = json.loads(out[out.index("{\n"):])
    choice = report["runtime_choice"]
    assert set(choice["fp32_ms"]) == {"onnxruntime", "openvino", "pytorch fast path"}
    files = {k: v for k, v in choice["fp32_ms"].items() if k != "pytorch fast path"}
    assert choice["chosen"] == min(files, key=files.get) == report["backend"]
    assert choice["speedup_over_pytorch_fast_path"] == round(
        choice["fp32_ms"]["pytorch fast path"] / files[choice["chosen"]], 2)
    assert all(c["max_abs_diff"] <= 1e-3 for c in report["checks"])
    suffix = {"onnxruntime": ".onnx", "openvino": ".xml"}[choice["chosen"]]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == (
        ["m.bin", "m.xml"] if suffix == ".xml" else ["m.onnx"])
    image = np.random.default_rng(3).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    assert torch.equal(load(tmp_path / "out" / f"m{suffix}").predict(image), model.predict(image))
    assert main(args) == 2  # the kept file is not replaced without --overwrite
    assert "already exists; pass --overwrite" in capsys.readouterr().err


def test_export_fastest_says_when_pytorch_is_the_faster_fp32_path(model, tmp_path, monkeypatch):
    from segzoo.deploy import fastest

    times = {fastest.LOADERS["onnxruntime"]: 9.0, fastest.LOADERS["openvino"]: 7.0, fastest.FAST_PATH_LOADER: 5.0}
    monkeypatch.setattr(fastest, "median_ms_in_own_process", lambda loader, *a, **k: times[loader])
    with pytest.warns(RuntimeWarning, match=r"fast path \(5.0 ms\) was faster than the openvino file \(7.0 ms\)"):
        report = fastest.export_fastest(model, tmp_path / "m", example_size=(64, 64))
    assert report["backend"] == "openvino" and report["runtime_choice"]["speedup_over_pytorch_fast_path"] == 0.71
    assert (tmp_path / "m.xml").is_file() and not (tmp_path / "m.onnx").exists()
    from segzoo.core.errors import InvalidValueError

    with pytest.raises(InvalidValueError, match="repeats must be at least 1.*got 0"):
        fastest.export_fastest(model, tmp_path / "n", example_size=(64, 64), repeats=0)
    assert not list(tmp_path.glob("n*"))


def test_dynamic_ir_of_many_classes_at_a_large_size_has_parity(tmp_path):
    """Issue 42's SegFormer-B0 (150 classes) failed its dynamic OpenVINO parity check by 0.5 at 512x512: OpenVINO
    computed the exported crop (a Gather of rows and columns after the final resize) wrongly for many channels at
    that size. The crop is now a negative Pad; a tiny FCN with 150 classes showed the same failure (0.91)."""
    torch.manual_seed(0)
    model = segzoo.create_model("fcn", "plain", 150, encoder_params={"widths": [8, 16]}).eval()
    report = segzoo.export(model, str(tmp_path / "m.xml"), example_size=(512, 512))
    assert report["dynamic"] and all(c["max_abs_diff"] <= 1e-3 for c in report["checks"])
