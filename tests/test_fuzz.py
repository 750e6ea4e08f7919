"""Property-based fuzzing of every untrusted surface (issue 43): generated safetensors headers, export metadata (the
one reader behind ONNX ``metadata_props``, OpenVINO ``rt_info`` and ``.pt2`` archives, plus real ONNX files), recipe
dicts, ``predict`` arguments and command lines. Each property: only a result or a ``SegzooError`` comes out, within
Hypothesis' deadline, and no file of the user's changes.

The fast suite runs ``FAST`` examples per surface; ``-m slow`` runs ``MANY``. Cases the fuzzers found are kept as
``@example``\\ s, so they run every time.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file

import segzoo
from helpers.files import snapshot
from segzoo.core.config import label_count
from segzoo.core.errors import SegzooError
from segzoo.inference.description import GraphFacts

FAST, MANY = 25, 400
COMMON = {"database": None, "derandomize": False,
          "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]}


def fuzz(prop, strategies: dict, found: list[dict] = (), deadline_ms: int = 10_000):
    """Two tests of the property ``prop`` over ``strategies``: ``FAST`` examples in the fast suite, ``MANY`` under
    ``-m slow``, each within ``deadline_ms``; the ``found`` cases (keyword arguments) run in both, every time."""
    def build(examples: int):
        def test(*args, **kwargs):
            return prop(*args, **kwargs)

        test.__signature__ = inspect.signature(prop)
        test.__name__ = test.__qualname__ = prop.__name__.lstrip("_")
        for case in found:
            test = example(**case)(test)
        return settings(max_examples=examples, **COMMON, deadline=deadline_ms)(given(**strategies)(test))

    return build(FAST), pytest.mark.slow(build(MANY))


# -- values ------------------------------------------------------------------------------------------------------
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63), st.floats(allow_nan=True),
                    st.text(max_size=20))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                    max_leaves=12)


def mutate(base: dict) -> st.SearchStrategy[dict]:
    """``base`` with some keys (at any depth) replaced by arbitrary JSON, deleted, or joined by unknown keys."""
    def paths(d: dict, prefix=()):
        for key, value in d.items():
            yield (*prefix, key)
            if isinstance(value, dict):
                yield from paths(value, (*prefix, key))

    every = list(paths(base))
    if not every:
        return st.just(base)

    @st.composite
    def build(draw):
        data = json.loads(json.dumps(base))
        for path in draw(st.lists(st.sampled_from(every), max_size=3)):
            parent = data
            for key in path[:-1]:
                parent = parent.get(key) if isinstance(parent, dict) else None
            if not isinstance(parent, dict):
                continue
            action = draw(st.sampled_from(["replace", "delete", "add"]))
            if action == "replace":
                parent[path[-1]] = draw(JSON)
            elif action == "delete":
                parent.pop(path[-1], None)
            else:
                parent[draw(st.text(min_size=1, max_size=6))] = draw(JSON)
        return data

    return build()


def tiny_model(num_classes: int = 3):
    return segzoo.create_model("unet", "plain", num_classes, encoder_params={"widths": [8, 16]},
                               decoder_channels=[8], upsampling="bilinear").eval()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from PIL import Image

    from segzoo.deploy import export_onnx
    from segzoo.storage.format import write_weights

    root = tmp_path_factory.mktemp("fuzz")
    model = tiny_model()
    write_weights(model, root / "good.safetensors")
    model.save_pretrained(root / "weights")
    export_onnx(model, root / "good.onnx", example_size=(32, 32))
    (root / "images").mkdir()
    Image.fromarray(np.zeros((24, 20, 3), np.uint8)).save(root / "images" / "a.png")
    (root / "masks").mkdir()
    Image.fromarray(np.zeros((24, 20), np.uint8)).save(root / "masks" / "a.png")
    (root / "text.txt").write_text("not an image")
    return root


# -- safetensors headers -------------------------------------------------------------------------------------------
def _header(world: Path) -> tuple[dict, dict]:
    with safe_open(str(world / "good.safetensors"), "pt") as f:
        header, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    return header, state


def _check_header(world: Path, tmp_path: Path, config: dict, meta: dict, raw: dict[str, str]) -> None:
    header, state = _header(world)
    header = {**header, "segzoo.config": json.dumps(config), "segzoo.meta": json.dumps(meta), **raw}
    path = tmp_path / "fuzzed.safetensors"
    save_file(state, str(path), metadata=header)
    try:
        segzoo.from_pretrained(path)
    except SegzooError:
        pass


BASE_CONFIG = tiny_model().config.to_dict()
BASE_META = tiny_model().meta.to_dict()


def _safetensors_header(world, tmp_path, config, meta, raw):
    _check_header(world, tmp_path, config, meta, raw)


test_fuzz_safetensors_header, test_fuzz_safetensors_header_many = fuzz(_safetensors_header, {
    "config": mutate(BASE_CONFIG), "meta": mutate(BASE_META),
    "raw": st.dictionaries(st.sampled_from(["segzoo.requires", "segzoo.version", "segzoo.config"]),
                           st.one_of(st.text(max_size=40), JSON.map(json.dumps)), max_size=2)}, [
    {"config": {**BASE_CONFIG, "encoder": "resnet18"}, "meta": BASE_META, "raw": {}},
    {"config": BASE_CONFIG, "meta": BASE_META, "raw": {"segzoo.config": "[" * 100_000}},
    {"config": {**BASE_CONFIG, "num_classes": 10**12}, "meta": BASE_META, "raw": {}},
])


# -- export metadata (ONNX metadata_props, OpenVINO rt_info and .pt2 archives share the reader) ---------------------
@st.composite
def export_props(draw):
    from segzoo.inference.runtime import describe

    props = describe(tiny_model())
    for key in draw(st.lists(st.sampled_from(sorted(props) + ["segzoo.quantization"]), max_size=3)):
        kind = draw(st.sampled_from(["json", "text", "delete", "mutated"]))
        if kind == "delete":
            props.pop(key, None)
        elif kind == "text":
            props[key] = draw(st.text(max_size=60))
        elif kind == "json":
            props[key] = json.dumps(draw(JSON))
        elif key in props and props[key].startswith("{"):
            props[key] = json.dumps(draw(mutate(json.loads(props[key]))))
    return props


GRAPHS = st.builds(GraphFacts, st.one_of(st.none(), st.integers(0, 300)), st.one_of(st.none(), st.integers(0, 8)),
    st.one_of(st.none(), st.tuples(st.integers(0, 5000), st.integers(0, 5000))))


def _export_description(props, graph):
    from segzoo.inference.description import read_description

    try:
        d = read_description(props, "'fuzzed.onnx'", graph)
    except SegzooError:
        return
    # what is accepted agrees with the graph: the classes it names, the window it uses
    assert d.meta.class_names is None or len(d.meta.class_names) == label_count(d.num_classes)
    size = d.report.get("fixed_size")
    assert size is None or (tuple(size) == graph.static_size and min(size) >= 16)


test_fuzz_export_description, test_fuzz_export_description_many = fuzz(_export_description, {
    "props": export_props(), "graph": GRAPHS}, [
    {"props": {"segzoo.meta": json.dumps({"class_names": ["a", "b"]})}, "graph": GraphFacts(3, 3, None)},
    {"props": {"segzoo.meta": "{}", "segzoo.quantization": json.dumps({"fixed_size": [1, 1]})},
     "graph": GraphFacts(3, 3, (1, 1))},
])


def _program_limits(limits, graph):
    from segzoo.inference.description import read_limits

    try:
        read_limits(limits, "'fuzzed.pt2'", graph)
    except SegzooError:
        pass


test_fuzz_program_limits, test_fuzz_program_limits_many = fuzz(_program_limits, {
    "limits": st.one_of(JSON.map(json.dumps), mutate({"dynamic": False, "min_side": 33, "size": [32, 32],
                                                      "in_channels": 3}).map(json.dumps)), "graph": GRAPHS})


def _onnx_file(world, tmp_path, props):
    import onnx

    from segzoo.inference.runtime import OnnxModel

    proto = onnx.load(str(world / "good.onnx"))
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(tmp_path / "fuzzed.onnx"))
    try:
        model = OnnxModel.load(tmp_path / "fuzzed.onnx")
    except SegzooError:
        return
    ids = model.predict(np.zeros((24, 20, 3), np.uint8))
    assert tuple(ids.shape) == (24, 20) and int(ids.max()) < label_count(model.num_classes)


test_fuzz_onnx_file, test_fuzz_onnx_file_many = fuzz(_onnx_file, {"props": export_props()})


# -- recipes -------------------------------------------------------------------------------------------------------
BASE_RECIPE = {"model": {"decoder": "unet", "encoder": "plain", "overrides": {"encoder_params": {"widths": [8, 16]}}},
               "data": {"root": "data", "classes": ["a", "b"], "val_fraction": 0.25},
               "augment": {"crop_size": 32, "scale": [0.5, 2.0]},
               "train": {"epochs": 1, "batch_size": 2, "lr": 0.01, "loss": "ce+dice", "amp": "auto"}}


def _recipe(recipe):
    from segzoo.training.recipe import Recipe

    try:
        Recipe.from_dict(recipe)
    except SegzooError:
        pass


test_fuzz_recipe, test_fuzz_recipe_many = fuzz(_recipe, {"recipe": mutate(BASE_RECIPE)}, [
    {"recipe": {**BASE_RECIPE, "train": {**BASE_RECIPE["train"], "epochs": math.inf}}},
    {"recipe": {**BASE_RECIPE, "model": "unet"}},
])


# -- predict arguments ---------------------------------------------------------------------------------------------
PREDICT_MODEL = tiny_model(2)
DTYPES = st.sampled_from([np.uint8, np.float32, np.float64, np.int64, np.bool_, np.uint16])


@st.composite
def images(draw):
    shape = draw(st.lists(st.integers(0, 40), min_size=1, max_size=5))
    array = np.random.default_rng(draw(st.integers(0, 9))).random(shape) * draw(st.sampled_from([1, 3, 255, 1e9]))
    array = array.astype(draw(DTYPES))
    return torch.from_numpy(array) if draw(st.booleans()) else array


OPTION = st.one_of(st.none(), st.booleans(), st.integers(-5, 5000), st.floats(allow_nan=True), st.text(max_size=6),
                   st.lists(st.one_of(st.floats(allow_nan=True), st.text(max_size=6)), max_size=3))


def _predict(image, options):
    try:
        ids = PREDICT_MODEL.predict(image, **options)
    except SegzooError:
        return
    assert ids.dtype == torch.int64 and int(ids.min()) >= 0 and int(ids.max()) <= 1


test_fuzz_predict, test_fuzz_predict_many = fuzz(_predict, {
    "image": images(),
    "options": st.dictionaries(st.sampled_from(["tile", "overlap", "tta", "scales", "batch"]), OPTION, max_size=3)}, [
    {"image": np.zeros((300, 300, 3), np.uint8), "options": {"tile": 16, "overlap": 0.99}},
    {"image": np.zeros((0, 5, 3), np.uint8), "options": {}},
    {"image": np.zeros((20, 20, 3), np.uint8), "options": {"scales": [8.0, 8.0], "tta": ["hflip", "vflip"]}},
])


# -- command lines -------------------------------------------------------------------------------------------------
FLAGS = ["--weights", "-w", "--output", "-o", "--overwrite", "--tile", "--overlap", "--tta", "--scales", "--batch",
         "--size", "--static", "--opset", "--count", "--calibration", "--flops", "--images", "--masks", "--set",
         "--plugins", "--weights", "--pattern", "--json", "--from", "--device", "--init", "--resume", "--crop",
         "--method", "--backend", "--criterion", "--mask-values", "--colours", "--overlay-min-side", "--quiet",
         "--uint8-input", "--round-to", "--scope", "--split", "--ignore-index"]
VALUES = ["{w}/weights", "{w}/good.safetensors", "{w}/good.onnx", "{w}/images", "{w}/text.txt", "{w}/missing",
          "{w}/out", "{w}/text.txt/out", "unet_r18", "hf-hub:../evil", "-1", "0", "0.99", "16", "1e9", "nan", "auto",
          "hflip", "train.epochs=0", "{}", "[1]", "x=y", "cpu", "cuda:9", "64"]


# a working command line per command, then up to two edits: a value replaced, a flag (with a value) added, an
# argument dropped; so that most examples get past argparse into segzoo's own checks
BASES = {
    "predict": ["{w}/images", "-w", "{w}/weights", "-o", "{w}/out"],
    "eval": ["-w", "{w}/weights", "--images", "{w}/images", "--masks", "{w}/masks"],
    "export": ["{w}/weights", "{w}/out.onnx", "--size", "32", "32"],
    "info": ["unet_r18", "--size", "64"],
    "list": ["--plugins"],
    "prune": ["{w}/weights", "--flops", "0.8", "-o", "{w}/out", "--round-to", "1"],
    "quantize": ["{w}/weights", "{w}/out.onnx", "--calibration", "{w}/images", "--count", "1", "--size", "32", "32"],
    "convert": ["{w}/good.safetensors", "{w}/out", "--from", "smp"],
    "train": ["{w}/missing.yaml", "-o", "{w}/out"],
}


@st.composite
def command_lines(draw):
    command = draw(st.sampled_from(sorted(BASES)))
    args = list(BASES[command])
    for _ in range(draw(st.integers(0, 2))):
        edit = draw(st.sampled_from(["replace", "add", "drop"]))
        if edit == "add":
            args += [draw(st.sampled_from(FLAGS)), draw(st.sampled_from(VALUES))]
        elif args:
            index = draw(st.integers(0, len(args) - 1))
            if edit == "replace":
                args[index] = draw(st.sampled_from(VALUES))
            else:
                del args[index]
    return command, args


def _command_line(world, argv):
    from segzoo.cli import main

    command, rest = argv
    args = [command, *(a.replace("{w}", str(world)) for a in rest)]
    if command in ("train", "publish") and not any(a.startswith("{w}") for a in rest):
        args.append(str(world / "missing"))  # never a bundled recipe: no fuzzed run trains for minutes
    before = snapshot(world)
    err = io.StringIO()
    (world / "cwd").mkdir(exist_ok=True)  # relative outputs (predict's default folder) land here
    with contextlib.chdir(world / "cwd"), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(args)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
    assert code in (0, 1, 2), (args, err.getvalue())
    event(f"{command} exit {code}: {err.getvalue().strip().splitlines()[-1][:90] if code else ''}")
    assert "Traceback" not in err.getvalue(), (args, err.getvalue())
    after = snapshot(world)
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    assert not changed, (args, changed)
    for path in [*world.glob("out*"), world / "cwd"]:  # what a command wrote: the next example starts clean
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


test_fuzz_command_line, test_fuzz_command_line_many = fuzz(_command_line, {
    "argv": command_lines()}, [
    {"argv": ("predict", ["{w}/images", "-w", "{w}/weights", "-o", "{w}/text.txt/out"])},
    {"argv": ("export", ["{w}/weights", "{w}/images", "--overwrite"])},
    {"argv": ("predict", ["{w}/images", "-w", "{w}/weights", "-o", "{w}/out", "--tile", "16", "--overlap", "0.99"])},
    {"argv": ("info", ["unet_r18", "--size", "1e9"])},
    {"argv": ("export", ["{w}/weights", "{w}/out/m.onnx", "--size", "64", "64", "--opset", "1e9"])},
], deadline_ms=120_000)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["weight_type", "reduce_range", "backend", "overflow_fix", "cpu_int8"]), JSON),
       st.sampled_from(["onnxruntime", "openvino"]), st.booleans())
def test_int8_saturation_check_reads_any_report_without_raising(report, runtime, vnni):
    """An INT8 file's report is untrusted JSON: the saturation check answers None or a short reason for any of it."""
    from segzoo.inference.int8_cpu import saturating_weights

    found = saturating_weights(report, runtime, cpu_vnni=vnni)
    assert found is None or (isinstance(found, str) and len(found) < 200)
    if vnni and runtime == "onnxruntime":
        assert found is None
