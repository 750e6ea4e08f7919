"""Static INT8 (QDQ) ONNX for CPUs: the graph is quantized (head and resize kept in float), keeps dynamic sizes,
stays close to fp32, predicts with the model's contract (tiling included), saves and loads; bad calibration input
and CLI misuse are clear errors. Figures on real weights: ``python -m benchmarks.deploy``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import segzoo
from conftest import TINY_SWIN_UNET
from segzoo.cli import main
from segzoo.deploy import QuantizedModel, cpu_int8_support, quantize

pytest.importorskip("onnxscript", reason="the export extra (onnxscript) is not installed")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The working directory quantize runs in: onnxruntime's tools like to leave files in it."""
    return tmp_path_factory.mktemp("cwd")


@pytest.fixture(scope="module")
def quantized(workdir):
    torch.manual_seed(0)
    model = segzoo.create("unet_r18", encoder="test_resnet", num_classes=3).eval()
    g = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (3, 48 + 8 * i, 64), dtype=torch.uint8, generator=g) for i in range(4)]
    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as mp:
        warnings.simplefilter("ignore", RuntimeWarning)  # a tiny model may well not be faster in INT8
        mp.chdir(workdir)
        return model, segzoo.quantize(model, images, example_size=(64, 64))


def test_leaves_nothing_in_the_working_directory(quantized, workdir):
    assert sorted(p.name for p in workdir.iterdir()) == []


def test_graph_is_quantized_but_the_head_stays_float(quantized):
    _, q = quantized
    graph = onnx.load_from_string(q.onnx_bytes).graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > ops.count("Conv")
    head = [n for n in graph.node if n.op_type == "Conv" and any(i.startswith("head.") for i in n.input)]
    assert head and head[0].input[1] == "head.weight"  # the float initializer, no DequantizeLinear in between
    assert q.report["kept_float"] >= 1 and set(q.report["onnxruntime_ms"]) == {"fp32", "int8"}
    assert 0.0 <= q.report["class_agreement_on_calibration"] <= 1.0 and q.report["calibration_images"] == 4


def test_close_to_fp32_at_a_new_size(quantized):
    model, q = quantized
    x = torch.randn(2, 3, 75, 53)  # batch 2, a size seen neither in export nor calibration
    got = q(x).numpy()
    with torch.no_grad():
        expected = model(x).numpy()
    assert got.shape == expected.shape
    spread = expected.max() - expected.min()
    assert np.abs(got - expected).max() < 0.15 * spread  # 8-bit: close, not equal
    assert not np.allclose(got, expected, atol=1e-6)  # it really is another graph


def test_predict_contract_with_tiling_and_save_load(quantized, tmp_path):
    model, q = quantized
    image = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    whole = q.predict(image)
    tiled = q.predict(image, tile=32, overlap=0.25, tta=("hflip",))
    assert whole.shape == tiled.shape == (70, 90) and whole.dtype == torch.int64  # one image: (H, W)
    path = q.save(tmp_path / "m.int8.onnx")
    loaded = QuantizedModel.load(path)
    assert torch.equal(loaded.predict(image), whole) and loaded.num_classes == 3
    assert loaded.meta.preprocessing == model.meta.preprocessing and loaded.report["method"] == "minmax"
    plain = onnx.load_from_string(q.onnx_bytes)
    del plain.metadata_props[:]
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    with pytest.raises(ValueError, match="carries no segzoo metadata"):
        QuantizedModel.load(tmp_path / "plain.onnx")


def test_fixed_size_model_calibrates_and_predicts_through_windows_of_its_size(workdir, tmp_path):
    """Swin-UNet exports static: calibration images of any size are windowed to it, predict() tiles any image
    with windows of that size (smaller images padded), and the size survives save / load."""
    torch.manual_seed(0)
    model = segzoo.create("swin_unet_t", num_classes=3, **TINY_SWIN_UNET).eval()
    g = torch.Generator().manual_seed(2)
    images = [torch.randint(0, 256, size, dtype=torch.uint8, generator=g) for size in [(3, 40, 50), (3, 80, 130)]]
    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as mp:
        warnings.simplefilter("ignore")  # the fixed-size export warning (tested in test_export) and INT8 speed
        mp.chdir(workdir)
        q = quantize(model, images, example_size=(64, 96))
    assert q.fixed_size == (64, 96) and q.report["fixed_size"] == [64, 96]
    with pytest.raises(ValueError, match=r"only 64x96 inputs.*got 70x90"):
        q(torch.randn(1, 3, 70, 90))
    for size in [(70, 150, 3), (40, 50, 3)]:  # larger than the window in one side, smaller in both
        image = np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8)
        ids = q.predict(image, tta=("hflip",))
        assert ids.shape == size[:2] and 0 <= int(ids.min()) and int(ids.max()) < 3
    loaded = QuantizedModel.load(q.save(tmp_path / "swin.int8.onnx"))
    assert loaded.fixed_size == (64, 96) and torch.equal(loaded.predict(image), q.predict(image))
    from PIL import Image

    Image.fromarray(image).save(tmp_path / "small.png")  # segzoo predict: windows of 64x96 replace --tile auto
    assert main(["predict", str(tmp_path / "small.png"), "-w", str(tmp_path / "swin.int8.onnx"),
                 "-o", str(tmp_path / "out")]) == 0
    assert np.array_equal(np.array(Image.open(tmp_path / "out" / "small.png")), q.predict(image).numpy())
    with pytest.raises(ValueError, match=r"tile=32 and window=\(64, 96\) exclude each other"):
        q.predict(image, tile=32)


def test_cli_predict_runs_an_int8_file(quantized, tmp_path):
    from PIL import Image

    _, q = quantized
    path = q.save(tmp_path / "m.int8.onnx")
    image = np.random.default_rng(3).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "a.png"), "-w", str(path), "-o", str(tmp_path / "out"),
                 "--tile", "32", "--tta", "hflip"]) == 0
    written = np.array(Image.open(tmp_path / "out" / "a.png"))
    assert np.array_equal(written, q.predict(image, tile=32, tta=("hflip",)).numpy())
    assert (tmp_path / "out" / "a_overlay.png").is_file()


def test_cpu_flags_decide_seven_bit_weights():
    vnni = cpu_int8_support("processor : 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n")
    assert vnni["vnni"] and not vnni["reduce_range"] and vnni["flags"] == ["avx512_vnni"]
    old = cpu_int8_support("flags : fpu sse avx2\n")
    assert not old["vnni"] and old["reduce_range"]


@pytest.mark.parametrize("vnni,weight_type,reduce_range,expected", [
    (True, None, None, ("int8", False)),
    (False, None, None, ("int8", True)),  # AVX2: 7-bit signed weights, never saturating u8 x s8 pairs
    (False, "uint8", None, ("uint8", False)),
    (True, "int8", True, ("int8", True)),
    (False, "int8", False, ("int8", False)),  # asked for: the caller knows the CPU
])
def test_weight_types_follow_the_cpu_unless_given(vnni, weight_type, reduce_range, expected):
    from segzoo.deploy.quantize import weight_types_for

    assert weight_types_for({"vnni": vnni}, weight_type, reduce_range) == expected


@pytest.mark.parametrize("weight_type,reduce_range,match", [
    ("int4", None, r"weight_type must be one of \['int8', 'uint8'\], got 'int4'"),
    ("uint8", True, "reduce_range applies to signed"),
])
def test_bad_weight_types_are_named(weight_type, reduce_range, match):
    from segzoo.core.errors import InvalidValueError
    from segzoo.deploy.quantize import weight_types_for

    with pytest.raises(InvalidValueError, match=match):
        weight_types_for({"vnni": True}, weight_type, reduce_range)


def test_unsigned_weights_are_written_as_uint8(quantized, workdir, monkeypatch):
    from onnx import TensorProto

    model, _ = quantized
    monkeypatch.chdir(workdir)
    images = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        q = quantize(model, images, example_size=(64, 64), weight_type="uint8")
    graph = onnx.load_from_string(q.onnx_bytes).graph
    zero_points = {i.name: i.data_type for i in graph.initializer}
    weights = [n.input[2] for n in graph.node if n.op_type == "DequantizeLinear" and "weight" in n.input[0]]
    assert weights and all(zero_points[z] == TensorProto.UINT8 for z in weights)
    assert q.report["weight_type"] == "uint8" and q.report["reduce_range"] is False
    assert (q.predict(images[0]) == model.predict(images[0])).float().mean() > 0.9


@pytest.mark.parametrize("images,match", [
    ([], "at least one calibration image"),
    ([torch.rand(3, 32, 32)], "calibration image 0: expected uint8"),
    ([torch.zeros(3, 32, 32, dtype=torch.uint8), np.zeros((32, 32, 1), np.uint8)], r"image\(s\) \[1\] have 1 channels"),
])
def test_bad_calibration_names_the_image(images, match):
    model = segzoo.create("unet_r18", encoder="test_resnet", num_classes=2)
    with pytest.raises(ValueError, match=match):
        quantize(model, images)


def test_histogram_calibration_of_mixed_sizes_is_a_clear_error():
    """onnxruntime's percentile / entropy calibrators stack every image's activations: mixed sizes failed deep
    inside numpy ("inhomogeneous shape"); minmax takes them."""
    model = segzoo.create("unet_r18", encoder="test_resnet", num_classes=2)
    images = [torch.zeros(3, 32, 32, dtype=torch.uint8), torch.zeros(3, 32, 48, dtype=torch.uint8)]
    with pytest.raises(ValueError, match=r"'percentile' calibration needs images of one size.*\(32, 32\), "
                                         r"\(32, 48\).*calibration_crop"):
        quantize(model, images, method="percentile")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        q = quantize(model, images, method="percentile", calibration_crop=40, example_size=(64, 64))
    assert q.report["calibration_crop"] == 40 and q.report["calibration_images"] == 2
    with pytest.raises(ValueError, match="calibration_crop must be a window side"):
        quantize(model, images, calibration_crop=0)


def test_cli_quantize(tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "calib"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.full((40, 56, 3), 60 * i, np.uint8)).save(folder / f"{i}.png")
    weights = tmp_path / "w.safetensors"
    from segzoo.storage.format import write_weights

    write_weights(segzoo.create("unet_r18", encoder="test_resnet", num_classes=2), weights)
    out = tmp_path / "m.int8.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert main(["quantize", str(weights), str(out), "--calibration", str(folder), "--size", "64", "64",
                     "--keep-float", "encoder.model.conv1"]) == 0
    report = QuantizedModel.load(out).report
    assert report["calibration_images"] == 2 and report["kept_float_modules"] == ["encoder.model.conv1"]
    assert main(["quantize", str(weights), str(out), "--calibration", str(folder)]) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err
    assert main(["quantize", str(weights), str(tmp_path / "x.onnx"), "--calibration", str(tmp_path / "none")]) == 2


def _quantized_weights(q) -> set[str]:
    """Names of the weight initializers that feed a DequantizeLinear node (quantized weights)."""
    graph = onnx.load_from_string(q.onnx_bytes).graph
    return {i for n in graph.node if n.op_type == "DequantizeLinear" for i in n.input if i.endswith("weight_quantized")}


def test_keep_float_leaves_the_named_modules_in_float_and_unknown_names_are_errors(quantized, workdir, monkeypatch):
    from segzoo.core.errors import InvalidValueError

    model, full = quantized
    monkeypatch.chdir(workdir)
    images = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        kept = quantize(model, images, example_size=(64, 64), keep_float=["encoder.model.conv1"])
    stem = {w for w in _quantized_weights(full) if w.startswith("encoder.model.conv1.")}
    assert stem, "the stem is quantized by default"
    assert not stem & _quantized_weights(kept) and _quantized_weights(kept) == _quantized_weights(full) - stem
    assert kept.report["kept_float_modules"] == ["encoder.model.conv1"]
    with pytest.raises(InvalidValueError, match=r"\['encoder.nope'\] name no weighted layer.*decoder"):
        quantize(model, images, example_size=(64, 64), keep_float=["encoder.nope"])


def test_sensitivity_ranks_groups_by_the_agreement_they_win_back(quantized, workdir, monkeypatch):
    from segzoo.deploy.sensitivity import agreement, layer_groups, sensitivity

    model, full = quantized
    monkeypatch.chdir(workdir)
    assert layer_groups(model, 2) == ["encoder.model", "decoder.blocks"]
    g = torch.Generator().manual_seed(5)
    calibration = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=g) for _ in range(2)]
    check = [torch.randint(0, 256, (3, 48, 56), dtype=torch.uint8, generator=g) for _ in range(2)]
    result = sensitivity(model, calibration, check, depth=2, example_size=(64, 64))
    assert [r["group"] for r in result["groups"]] in (["encoder.model", "decoder.blocks"],
                                                       ["decoder.blocks", "encoder.model"])
    gains = [r["gain"] for r in result["groups"]]
    assert gains == sorted(gains, reverse=True)
    for row in result["groups"]:
        assert row["gain"] == round(row["agreement"] - result["baseline_agreement"], 5)
    assert 0.5 < result["baseline_agreement"] <= 1.0 and result["check_images"] == 2
    assert agreement(full, model, check) > 0.5


def test_published_weights_quantize_by_their_recorded_recipe(tmp_path, capsys, monkeypatch):
    """The manifest's int8 recipe (found by the file's sha256, whatever path names it) is what segzoo quantize
    uses when neither --method nor --keep-float is given, the one for CPUs without VNNI on such a CPU; flags
    override it; a malformed recipe is a manifest problem."""
    from PIL import Image

    from segzoo.deploy.recipes import zoo_int8_recipe
    from segzoo.storage.format import write_weights
    from segzoo.storage.manifest import check_manifest, manifest_entry, update_manifest

    zoo = tmp_path / "weights"
    zoo.mkdir()
    file = zoo / "unet_r18.toy.safetensors"
    write_weights(segzoo.create("unet_r18", encoder="test_resnet", num_classes=2), file)
    recipe = {"method": "percentile", "keep_float": ["encoder.model.conv1"], "calibration_crop": 48}
    no_vnni = {"method": "minmax", "keep_float": ["encoder.model.layer1"], "weight_type": "int8", "reduce_range": True}
    update_manifest(manifest_entry("unet_r18", "toy", file, dataset="toy", metrics={}, license="-", command="-",
                                   int8={"onnxruntime": recipe, "onnxruntime-no-vnni": no_vnni}), zoo)
    monkeypatch.setenv("SEGZOO_WEIGHTS_DIR", str(zoo))
    copy = tmp_path / "elsewhere.safetensors"
    copy.write_bytes(file.read_bytes())
    model = segzoo.from_pretrained(str(copy))
    assert zoo_int8_recipe(model, "onnxruntime") == {**recipe, "weights": "unet_r18.toy", "key": "onnxruntime"}
    assert zoo_int8_recipe(model, "onnxruntime", vnni=False) == {
        **no_vnni, "calibration_crop": None, "weights": "unet_r18.toy", "key": "onnxruntime-no-vnni"}
    assert zoo_int8_recipe(model, "openvino") is None
    assert zoo_int8_recipe(segzoo.create("unet_r18", encoder="test_resnet", num_classes=2), "onnxruntime") is None

    folder = tmp_path / "calib"
    folder.mkdir()
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(folder / "0.png")
    import importlib

    quantize_module = importlib.import_module("segzoo.deploy.quantize")  # the package names the function too
    with_vnni = {"flags": ["avx512_vnni"], "vnni": True, "reduce_range": False, "known": True}
    monkeypatch.setattr(quantize_module, "cpu_int8_support", lambda: with_vnni)  # whatever CPU runs the test
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert main(["quantize", str(copy), str(tmp_path / "a.onnx"), "--calibration", str(folder),
                     "--size", "64", "64"]) == 0
        assert "unet_r18.toy's onnxruntime INT8 recipe" in capsys.readouterr().err
        report = QuantizedModel.load(tmp_path / "a.onnx").report
        assert report["method"] == "percentile" and report["kept_float_modules"] == ["encoder.model.conv1"]
        assert report["calibration_crop"] == 48
        assert main(["quantize", str(copy), str(tmp_path / "b.onnx"), "--calibration", str(folder),
                     "--size", "64", "64", "--method", "minmax"]) == 0
        assert "recipe" not in capsys.readouterr().err
        report = QuantizedModel.load(tmp_path / "b.onnx").report
        assert report["method"] == "minmax" and report["kept_float_modules"] == []

        without_vnni = {"flags": [], "vnni": False, "reduce_range": True, "known": True}
        monkeypatch.setattr(quantize_module, "cpu_int8_support", lambda: without_vnni)
        assert main(["quantize", str(copy), str(tmp_path / "c.onnx"), "--calibration", str(folder),
                     "--size", "64", "64"]) == 0
        assert "unet_r18.toy's onnxruntime-no-vnni INT8 recipe" in capsys.readouterr().err
        report = QuantizedModel.load(tmp_path / "c.onnx").report
        assert report["kept_float_modules"] == ["encoder.model.layer1"] and report["reduce_range"] is True
        assert report["weight_type"] == "int8" and report["cpu_int8"] == []

    import json

    manifest = json.loads((zoo / "manifest.json").read_text())
    manifest["files"][0]["int8"] = {"onnxruntime": {"method": "minmax"}, "tensorrt": {}}
    (zoo / "manifest.json").write_text(json.dumps(manifest))
    problems = check_manifest(zoo, models=segzoo.core.registry.MODELS)
    assert any("int8 must map" in p and "tensorrt" in p for p in problems), problems
    manifest["files"][0]["int8"] = {"onnxruntime": {"method": "minmax", "keep_float": [], "weight_type": "int4"},
                                    "openvino": {"method": "nncf", "keep_float": [], "reduce_range": True}}
    (zoo / "manifest.json").write_text(json.dumps(manifest))
    problems = check_manifest(zoo, models=segzoo.core.registry.MODELS)
    assert any("int8.onnxruntime must be" in p and "int4" in p for p in problems), problems
    assert any("int8.openvino must be" in p and "reduce_range" in p for p in problems), problems


def test_entropy_calibration_clips_ranges_that_minmax_keeps_whole(tmp_path, monkeypatch):
    """segzoo's entropy method is a real KL calibration (onnxruntime's, as quantize_static configures it, has one
    candidate range and equals minmax): its activation scales are never wider than minmax's, and some narrower."""
    from onnx import numpy_helper

    from segzoo.deploy.quantize import PreparedGraph

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    model = segzoo.create("unet_r18", encoder="test_resnet", num_classes=3).eval()
    images = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in range(4)]
    graph = PreparedGraph(model, tmp_path, (64, 64), None)  # exported once for both methods
    inputs = graph.inputs(model, images)

    def scales(method):
        onnx_bytes, _ = graph.int8(inputs, [], method, True, "int8", False)
        return {t.name: float(numpy_helper.to_array(t).ravel()[0]) for t in onnx.load_from_string(onnx_bytes).graph
                .initializer if t.name.endswith("_scale") and numpy_helper.to_array(t).size == 1}

    minmax, entropy = scales("minmax"), scales("entropy")
    shared = sorted(set(minmax) & set(entropy))
    assert len(shared) > 10
    assert all(entropy[k] <= minmax[k] * (1 + 1e-5) for k in shared)
    assert sum(entropy[k] < minmax[k] * 0.99 for k in shared) >= 3


def test_kl_range_clips_a_long_tail_and_keeps_a_flat_distribution():
    from segzoo.deploy.calibration import kl_range

    edges = np.linspace(-10, 10, 2049)
    centres = (edges[:-1] + edges[1:]) / 2
    gaussian = np.exp(-centres**2 / 2) * 1e6 * (centres >= 0)  # a ReLU's output: nothing below zero
    gaussian[-1] = 1  # one outlier at 10
    lo, hi = kl_range(gaussian, edges, 0.0, 10.0)
    assert lo == 0.0 and 3 < hi < 8
    flat = np.where(np.abs(centres) < 5, 1000.0, 0.0)
    lo, hi = kl_range(flat, edges, -5.0, 5.0)
    assert lo == -5.0 and hi == 5.0


@pytest.mark.parametrize("report,runtime,vnni,found", [
    ({"weight_type": "int8", "reduce_range": False}, "onnxruntime", False, "signed 8-bit weights"),
    ({"weight_type": "int8", "reduce_range": False}, "onnxruntime", True, None),  # VNNI sums in 32 bits
    ({"weight_type": "int8", "reduce_range": True}, "onnxruntime", False, None),  # 7-bit pairs never saturate
    ({"weight_type": "uint8", "reduce_range": False}, "onnxruntime", False, None),  # the u8 x u8 kernel
    ({"reduce_range": False}, "onnxruntime", False, "signed 8-bit weights"),  # written before weight_type was
    ({}, "onnxruntime", False, None),  # an fp32 export
    ({"fixed_size": [64, 64]}, "openvino", False, None),  # an fp32 IR
    ({"backend": "openvino", "overflow_fix": "first_layer"}, "openvino", False, "outside NNCF's overflow fix"),
    ({"backend": "openvino"}, "openvino", False, "outside NNCF's overflow fix ('first_layer')"),
    ({"backend": "openvino", "overflow_fix": "enable"}, "openvino", False, None),
    ({"backend": "openvino", "overflow_fix": "disable"}, "openvino", True, None),
])
def test_saturating_weights_are_signed_8_bit_weights_on_a_cpu_without_vnni(report, runtime, vnni, found):
    from segzoo.inference.int8_cpu import saturating_weights

    result = saturating_weights(report, runtime, cpu_vnni=vnni)
    assert result is None if found is None else found in result


def test_openvino_weights_saturate_where_onednn_is_capped_below_vnni(monkeypatch):
    from segzoo.inference.int8_cpu import saturating_weights

    report = {"backend": "openvino", "overflow_fix": "first_layer"}
    assert saturating_weights(report, "openvino", cpu_vnni=True) is None
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert "overflow fix" in saturating_weights(report, "openvino", cpu_vnni=True)
    # onnxruntime's MLAS ignores oneDNN's cap: its VNNI kernels still run
    assert saturating_weights({"weight_type": "int8", "reduce_range": False}, "onnxruntime", cpu_vnni=True) is None
    with pytest.raises(ValueError, match="runtime must be one of"):
        saturating_weights(report, "tensorrt", cpu_vnni=True)


def test_loading_an_8_bit_file_on_a_cpu_without_vnni_warns_naming_it(quantized, tmp_path, monkeypatch):
    """A file quantized with signed 8-bit weights on a VNNI CPU, carried to an AVX2-only one: its load warns, with
    the file's name and how to avoid it; the same file on a VNNI CPU, and a 7-bit file anywhere, load silently."""
    from segzoo.inference import int8_cpu

    model, q = quantized
    paths = {}
    for name, reduce_range in (("eight", False), ("seven", True)):
        report = {**q.report, "weight_type": "int8", "reduce_range": reduce_range, "cpu_int8": ["avx512_vnni"]}
        file = QuantizedModel(q.onnx_bytes, model.meta, model.num_classes, report)
        paths[name] = file.save(tmp_path / f"{name}.onnx")
    monkeypatch.setattr(int8_cpu, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    monkeypatch.setattr(int8_cpu, "cpu_has_vnni", lambda: False)
    with pytest.warns(RuntimeWarning, match=r"eight\.onnx' has signed 8-bit weights .*avx512_vnni.*lack VNNI.*"
                                            r"segzoo quantize keeps 7-bit weights here"):
        QuantizedModel.load(paths["eight"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        QuantizedModel.load(paths["seven"])
        monkeypatch.setattr(int8_cpu, "cpu_has_vnni", lambda: True)
        QuantizedModel.load(paths["eight"])
