"""Issue 43, class 2: every field segzoo reads from a file is bounded, schema-checked and checked against the graph or
tensors it describes. Each case forges one field of a real export and expects one SegzooError naming the file and
the field, never a raw error, a hang or a run with wrong classes."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from safetensors import safe_open
from safetensors.torch import save_file

import segzoo
from helpers.files import snapshot
from segzoo.core.errors import SegzooError
from segzoo.deploy import export_onnx
from segzoo.inference.runtime import LIMITS_FILE, META_FILE, OnnxModel, load_program
from segzoo.storage.format import write_weights


def tiny_model(num_classes: int = 3):
    return segzoo.create_model("unet", "plain", num_classes, encoder_params={"widths": [8, 16, 16]},
                               decoder_channels=[8, 8], upsampling="bilinear").eval()


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("exports")
    model = tiny_model()
    model.meta.class_names = ["a", "b", "c"]
    write_weights(model, root / "good.safetensors")
    export_onnx(model, root / "dynamic.onnx", example_size=(32, 32))
    export_onnx(model, root / "static.onnx", dynamic=False, example_size=(32, 32))
    return root


def _forge_onnx(src: Path, dst: Path, **changes: str | None) -> Path:
    proto = onnx.load(str(src))
    props = {p.key: p.value for p in proto.metadata_props}
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(dst))
    return dst


def _meta(src: Path) -> dict:
    return json.loads({p.key: p.value for p in onnx.load(str(src)).metadata_props}["segzoo.meta"])


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


ONNX_CASES = {
    # name: (source, changes, message)
    "fewer-class-names-than-the-graph": ("dynamic", {"segzoo__meta": json.dumps({"class_names": ["a", "b"]})},
                                         r"segzoo\.meta.*2 class names.*3 classes"),
    "config-classes-differ-from-graph": ("dynamic", {"segzoo__config": json.dumps(
        {**tiny_model(5).config.to_dict()})}, r"segzoo\.config.*num_classes 5.*graph outputs 3"),
    "fixed-size-1x1": ("static", {"segzoo__quantization": json.dumps({"fixed_size": [1, 1]})},
                       r"fixed_size must be \[height, width\].*16\.\."),
    "fixed-size-not-the-graphs": ("static", {"segzoo__quantization": json.dumps({"fixed_size": [64, 64]})},
                                  r"fixed_size \[64, 64\], but the graph's input is 32x32"),
    "fixed-size-on-a-dynamic-graph": ("dynamic", {"segzoo__quantization": json.dumps({"fixed_size": [32, 32]})},
                                      r"fixed_size \[32, 32\] for a graph that takes any input size"),
    "meta-nested-deep": ("dynamic", {"segzoo__meta": '{"training": {"x": ' + _nested(5000) + "}}"},
                         r"segzoo\.meta.*not valid JSON|nests"),
    "meta-nested-40": ("dynamic", {"segzoo__meta": '{"training": {"x": ' + _nested(40) + "}}"},
                       r"segzoo\.meta.*nests lists or mappings 4\d deep"),
    "meta-huge": ("dynamic", {"segzoo__meta": json.dumps({"description": "x" * (2 << 20)})},
                  r"segzoo\.meta.*bytes of JSON, more than"),
    "meta-a-list": ("dynamic", {"segzoo__meta": "[1, 2]"}, r"segzoo\.meta.*must hold a JSON object, got list"),
    "config-encoder-a-string": ("dynamic", {"segzoo__config": json.dumps(
        {"encoder": "resnet18", "decoder": "unet", "num_classes": 3})},
        r"segzoo\.config.*encoder: expected a mapping of EncoderConfig fields, got 'resnet18'"),
    "input-dtype-unknown": ("dynamic", {"segzoo__input": json.dumps({"dtype": "float64"})},
                            r"segzoo\.input.*float64.*expected float32 or uint8"),
    "input-unknown-key": ("dynamic", {"segzoo__input": json.dumps({"dtype": "uint8", "scale": 2})},
                          r"segzoo\.input.*unknown key\(s\) \['scale'\]"),
    "source-not-strings": ("dynamic", {"segzoo__source": json.dumps({"sha256": 5})},
                           r"segzoo\.source.*mapping of strings"),
    "report-a-string": ("dynamic", {"segzoo__quantization": '"int8"'}, r"segzoo\.quantization.*JSON object"),
    "class-colours-too-few": ("dynamic", {"segzoo__meta": json.dumps({"class_colours": [[1, 2, 3]]})},
                              r"segzoo\.meta.*1 class colours for a model with 3 classes"),
    "mean-not-a-number": ("dynamic", {"segzoo__meta": json.dumps({"preprocessing": {"mean": ["x", 1, 2]}})},
                          r"segzoo\.meta"),
}


@pytest.mark.parametrize("case", sorted(ONNX_CASES))
def test_onnx_metadata_is_checked(case, exports, tmp_path):
    source, changes, message = ONNX_CASES[case]
    path = _forge_onnx(exports / f"{source}.onnx", tmp_path / "forged.onnx", **changes)
    with pytest.raises(SegzooError, match=message) as info:
        OnnxModel.load(path)
    assert "forged.onnx" in str(info.value)


def test_a_forged_onnx_file_is_refused_by_eval_and_predict_before_any_output(exports, tmp_path, capsys):
    """The issue's case: an ONNX file listing fewer class names than its graph has classes was evaluated with
    wrong per-class figures and exit status 0."""
    from segzoo.cli import main
    from segzoo.data.synthetic import write_shapes_dataset

    write_shapes_dataset(tmp_path / "data", n_images=2, size=32, seed=0)
    path = _forge_onnx(exports / "dynamic.onnx", tmp_path / "forged.onnx",
                       segzoo__meta=json.dumps({**_meta(exports / "dynamic.onnx"), "class_names": ["a", "b"]}))
    before = snapshot(tmp_path)
    assert main(["predict", str(tmp_path / "data" / "images"), "-w", str(path), "-o", str(tmp_path / "out")]) == 2
    assert "2 class names" in capsys.readouterr().err
    assert main(["eval", "-w", str(path), "--images", str(tmp_path / "data" / "images"), "--masks",
                 str(tmp_path / "data" / "masks")]) == 2
    err = capsys.readouterr().err
    assert "2 class names" in err and "Traceback" not in err
    assert snapshot(tmp_path) == before


def test_the_untouched_exports_still_load(exports):
    for name in ("dynamic", "static"):
        model = OnnxModel.load(exports / f"{name}.onnx")
        assert model.num_classes == 3 and model.meta.class_names == ["a", "b", "c"]
    assert OnnxModel.load(exports / "static.onnx").fixed_size is None  # an fp32 static export sets no window


# -- safetensors headers ----------------------------------------------------------------------------------------
def _forge_header(src: Path, dst: Path, **changes: str) -> Path:
    with safe_open(str(src), "pt") as f:
        header, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    save_file(state, str(dst), metadata={**header, **{k.replace("__", "."): v for k, v in changes.items()}})
    return dst


def _config(src: Path) -> dict:
    with safe_open(str(src), "pt") as f:
        return json.loads(f.metadata()["segzoo.config"])


HEADER_CASES = {
    "config-nested-deep": ({"segzoo__config": '{"decoder_params": {"x": ' + _nested(100000) + "}}"},
                           r"segzoo\.config.*(not valid JSON|nests)"),
    "encoder-a-string": ("encoder", r"segzoo\.config.*encoder: expected a mapping of EncoderConfig fields"),
    "aux-head-a-list": ("aux_head", r"segzoo\.config.*aux_head"),
    "requires-nested": ({"segzoo__requires": _nested(60)}, r"segzoo\.requires.*nests"),
    "requires-numbers": ({"segzoo__requires": "[{\"kind\": 5}]"}, r"segzoo\.requires.*mappings of strings"),
    "meta-huge": ({"segzoo__meta": json.dumps({"description": "x" * (2 << 20)})}, r"segzoo\.meta.*bytes"),
    "config-num-classes-a-string": ("num_classes", r"segzoo\.config.*num_classes"),
}


@pytest.mark.parametrize("case", sorted(HEADER_CASES))
def test_weights_header_is_checked(case, exports, tmp_path):
    changes, message = HEADER_CASES[case]
    if isinstance(changes, str):  # one config field replaced by a value of the wrong type
        config = _config(exports / "good.safetensors")
        config[changes] = {"encoder": "resnet18", "aux_head": [1, 2], "num_classes": "3"}[changes]
        changes = {"segzoo__config": json.dumps(config)}
    path = _forge_header(exports / "good.safetensors", tmp_path / "forged.safetensors", **changes)
    with pytest.raises(SegzooError, match=message) as info:
        segzoo.from_pretrained(path)
    assert "forged.safetensors" in str(info.value)


# -- transforms.json beside weights -----------------------------------------------------------------------------
@pytest.mark.parametrize("transform, message", [
    ({"__class_fullname__": "Compose", "transforms": [{"__class_fullname__": "Resize", "height": 99999,
                                                      "width": 99999}, {"__class_fullname__": "ToTensorV2"}]},
     r"transforms \['Resize', 'ToTensorV2'\]"),
    ({"__class_fullname__": "Compose", "transforms": [{"__class_fullname__": "LongestMaxSize", "max_size": 10**6},
                                                     {"__class_fullname__": "ToTensorV2"}]}, r"max_size 1000000"),
    ({"__class_fullname__": "Compose", "transforms": "ToTensorV2"}, r"a list of transforms"),
])
def test_a_transform_file_may_hold_only_what_segzoo_writes(transform, message, exports, tmp_path):
    from segzoo.api import eval_transform

    folder = tmp_path / "weights"
    tiny_model().save_pretrained(folder)
    (folder / "transforms.json").write_text(json.dumps({"eval": {"__version__": "2.0.8", "transform": transform}}))
    with pytest.raises(SegzooError, match=message):
        eval_transform(folder)


def test_the_transform_segzoo_writes_is_read_back(tmp_path):
    from segzoo.api import eval_transform
    from segzoo.data.transforms import eval_preset, to_dict

    folder = tmp_path / "weights"
    tiny_model().save_pretrained(folder)
    (folder / "transforms.json").write_text(json.dumps({"train": {}, "eval": to_dict(eval_preset(48))}))
    transform = eval_transform(folder)
    out = transform(image=np.zeros((30, 60, 3), np.uint8))["image"]
    assert tuple(out.shape) == (3, 24, 48)


# -- .pt2 archives ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    from segzoo.deploy import export_program

    path = tmp_path_factory.mktemp("program") / "m.pt2"
    export_program(tiny_model(), path, dynamic=False, example_size=(32, 32))
    return path


def _forge_archive(src: Path, dst: Path, name: str, text: str) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith(f"extra/{name}"):
                data = text.encode()
            zout.writestr(item, data)
    return dst


@pytest.mark.parametrize("name, text, message", [
    (LIMITS_FILE, json.dumps({"size": [1, 1], "dynamic": False}), r"size \[1, 1\], but the program's input is 32x32"),
    (LIMITS_FILE, json.dumps({"size": "big"}), r"size must be \[height, width\]"),
    (LIMITS_FILE, json.dumps({"min_side": -4, "dynamic": True}), r"min_side must be an integer"),
    (LIMITS_FILE, json.dumps({"exec": "x"}), r"unknown key\(s\) \['exec'\]"),
    (LIMITS_FILE, _nested(3000), r"segzoo_limits\.json.*(not valid JSON|nests|bytes of JSON)"),
    (META_FILE, "[]", r"segzoo_meta\.json.*JSON object"),
    (META_FILE, json.dumps({"segzoo.meta": json.dumps({"class_names": ["x"]})}), r"1 class names.*3 classes"),
])
def test_program_metadata_is_checked(name, text, message, program, tmp_path):
    path = _forge_archive(program, tmp_path / "forged.pt2", name, text)
    with pytest.raises(SegzooError, match=message):
        load_program(path)


def test_the_untouched_program_loads(program):
    loaded = load_program(program)
    assert loaded.num_classes == 3 and loaded.limits["size"] == [32, 32]


# -- OpenVINO IR ------------------------------------------------------------------------------------------------
def test_openvino_rt_info_is_checked(exports, tmp_path):
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    import openvino as ov

    from segzoo.deploy.openvino import export_openvino
    from segzoo.inference.runtime import OPENVINO_RT_INFO, OpenVinoModel

    export_openvino(tiny_model(), tmp_path / "m.xml", example_size=(32, 32))
    ir = ov.Core().read_model(str(tmp_path / "m.xml"))
    ir.set_rt_info(json.dumps({"class_names": ["only one"]}), [OPENVINO_RT_INFO, "segzoo.meta"])
    ov.save_model(ir, str(tmp_path / "forged.xml"))
    with pytest.raises(SegzooError, match=r"forged\.xml.*1 class names.*3 classes"):
        OpenVinoModel.load(tmp_path / "forged.xml")
