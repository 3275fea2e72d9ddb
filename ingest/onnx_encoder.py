"""A sentence-transformers model run by ONNX Runtime: exported once, then no torch at all.

``ensure_exported`` turns the model into ``model.onnx`` (fp32, mean pooling inside the
graph) and ``model-int8.onnx`` (dynamic int8 weights) beside its ``tokenizer.json``, in a
folder of the model cache. Like the chat model's conversion it runs under a file lock and
the folder appears by an atomic rename: absent or complete, never half written.

``OnnxEncoder`` tokenizes with the ``tokenizers`` library, runs the file, and returns
L2-normalised float32 rows, identical (cosine >= 0.99999) to sentence-transformers' own for
fp32. Texts are sorted by length before batching so padding is wasted only within a batch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FILES = {"fp32": "model.onnx", "int8": "model-int8.onnx"}
TOKENIZER = "tokenizer.json"
CONFIG = "encoder.json"
EXPORT_VERSION = 2  # bump when the export changes, so stale folders are not reused (2: fused, int8 ops chosen)
# Operators whose weights the int8 file quantizes (bench/embedding_backends.py --int8-variants).
QUANTIZED_OPS = ["MatMul", "Attention"]


class UnsupportedModel(ValueError):
    """The model is not a Transformer + mean/CLS pooling sentence-transformers stack."""


def export_dir(cache_root: Path, model_path: str) -> Path:
    """Where a model's export lives: named by the model and a digest of its weights' identity."""
    source = Path(model_path)
    if source.is_dir():
        stamp = ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                         for p in sorted(source.iterdir()) if p.is_file())
    else:
        stamp = model_path  # a hub name: its revision is whatever sentence-transformers loads
    digest = hashlib.sha1(f"{source.resolve() if source.is_dir() else model_path}|{stamp}|{EXPORT_VERSION}"
                          .encode()).hexdigest()[:10]
    name = (source.name if source.is_dir() else model_path.replace("/", "--")) or "model"
    if name == "model" and source.is_dir():  # the packaged model's folder is just "model"
        name = source.parent.name
    return cache_root / f"{name}-onnx-{digest}"


def ensure_exported(model_path: str, target: Path) -> Path:
    """Export ``model_path`` into ``target`` unless another process already did (once,
    atomically: app.model_cache); returns ``target``."""
    from app.model_cache import build_once

    return build_once(target, CONFIG, lambda work: export(model_path, work))


def export(model_path: str, out: Path) -> None:
    """Write the fp32 and int8 ONNX files, the tokenizer and the encoder settings into ``out``."""
    log.warning("Exporting the embedding model %s to ONNX once into %s (about 30 s).", model_path, out.parent)
    root = logging.getLogger()
    level = root.level
    with warnings.catch_warnings():  # the tracer's and the quantizer's advice is about other models
        warnings.simplefilter("ignore")
        root.setLevel(max(level, logging.ERROR))
        try:
            _export(model_path, out)
        finally:
            root.setLevel(level)


def _export(model_path: str, out: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    # Eager attention traces to the MatMul/Softmax pattern ONNX Runtime's optimizer fuses.
    model = SentenceTransformer(model_path, device="cpu", model_kwargs={"attn_implementation": "eager"})
    transformer, pooling = _stack(model)
    wrapped = _Pooled(transformer.auto_model, pooling).eval()
    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = {name: torch.ones((2, 8), dtype=torch.int64) for name in names}
    dynamic = {name: {0: "batch", 1: "tokens"} for name in names}
    traced = out / "traced.onnx"
    with torch.no_grad():
        torch.onnx.export(wrapped, (example["input_ids"], example["attention_mask"], example["token_type_ids"]),
                          str(traced), input_names=names, output_names=["embedding"],
                          dynamic_axes={**dynamic, "embedding": {0: "batch"}}, opset_version=17, dynamo=False)
    _fuse(traced, out / FILES["fp32"], transformer.auto_model.config)  # consumes traced.onnx
    _quantize(out / FILES["fp32"], out / FILES["int8"])
    model.tokenizer.backend_tokenizer.save(str(out / TOKENIZER))
    config = {"max_length": int(model.max_seq_length), "pooling": pooling, "dim": int(model.get_embedding_dimension()
              if hasattr(model, "get_embedding_dimension") else model.get_sentence_embedding_dimension()),
              "pad_id": int(model.tokenizer.pad_token_id or 0), "source": str(model_path)}
    (out / CONFIG).write_text(json.dumps(config, indent=1))


def _fuse(traced: Path, target: Path, config) -> None:
    """``target``: ``traced`` with each layer's attention, GELU and layer norms fused into single
    ONNX Runtime operators (onnxruntime.transformers' BERT optimizer), kept only when every layer
    fused and the outputs match the traced graph's; otherwise the traced graph itself."""
    try:
        complete = _fused_matches(traced, target, config)
    except Exception as exc:  # an architecture the optimizer does not know: the traced graph is correct
        log.info("ONNX fusion skipped (%s: %s)", type(exc).__name__, exc)
        complete = False
    if complete:
        traced.unlink()
    else:
        target.unlink(missing_ok=True)
        traced.replace(target)


def _fused_matches(traced: Path, target: Path, config) -> bool:
    import onnxruntime as ort
    from onnxruntime.transformers.optimizer import optimize_model

    fused = optimize_model(str(traced), model_type="bert", num_heads=int(config.num_attention_heads),
                           hidden_size=int(config.hidden_size), opt_level=1)
    if fused.get_fused_operator_statistics().get("Attention", 0) != int(config.num_hidden_layers):
        return False
    fused.save_model_to_file(str(target))
    rng = np.random.default_rng(0)
    lengths = np.array([[24], [9], [3]])
    feed = {"input_ids": rng.integers(1000, 2000, size=(3, 24)), "token_type_ids": np.zeros((3, 24), np.int64),
            "attention_mask": (np.arange(24) < lengths).astype(np.int64)}
    options = ort.SessionOptions()
    options.log_severity_level = 3
    a, b = (ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, feed)[0]
            for path in (traced, target))
    cosine = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return bool(np.all(cosine > 0.99999))


def _quantize(fp32: Path, target: Path) -> None:
    """Dynamic int8 weights (per output channel) for the matrix products; the token embeddings
    and layer norms stay fp32 (bench/embedding_backends.py measures what each choice costs)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=QUANTIZED_OPS, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def _stack(model) -> tuple:
    """The Transformer module and the pooling mode; UnsupportedModel for anything else."""
    kinds = [type(module).__name__ for module in model]
    if kinds[:2] != ["Transformer", "Pooling"] or any(k != "Normalize" for k in kinds[2:]):
        raise UnsupportedModel(f"modules {kinds} (only Transformer + Pooling [+ Normalize] can be exported)")
    mode = getattr(model[1], "pooling_mode", None) or ("cls" if model[1].pooling_mode_cls_token else "mean")
    if mode not in ("mean", "cls"):
        raise UnsupportedModel(f"pooling {mode!r} (only mean and cls can be exported)")
    return model[0], mode


def _pooled_module():
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self, encoder, pooling: str):
            super().__init__()
            self.encoder, self.pooling = encoder, pooling

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state
            if self.pooling == "cls":
                return hidden[:, 0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    return Pooled


def _Pooled(encoder, pooling):  # noqa: N802 - builds the torch module without importing torch at module load
    return _pooled_module()(encoder, pooling)


class OnnxEncoder:
    """``encode(texts) -> float32 (n, dim)`` rows L2-normalised, from an exported folder."""

    def __init__(self, folder: Path, precision: str = "int8", batch_size: int = 32, model_file: Path | None = None):
        from tokenizers import Tokenizer

        self.folder, self.precision, self.batch_size = folder, precision, batch_size
        self.model_file = model_file or folder / FILES[precision]  # another file: a benchmark's variant
        self.config = json.loads((folder / CONFIG).read_text())
        self.dim = int(self.config["dim"])
        self.tokenizer = Tokenizer.from_file(str(folder / TOKENIZER))
        self.tokenizer.enable_truncation(max_length=int(self.config["max_length"]))
        self.tokenizer.enable_padding(pad_id=int(self.config["pad_id"]))
        self._sessions: dict[int, object] = {}

    def _session(self, threads: int):
        """One session per thread count: 1 for a single query, all cores (0) for batches."""
        if threads not in self._sessions:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            self._sessions[threads] = ort.InferenceSession(str(self.model_file), options,
                                                           providers=["CPUExecutionProvider"])
        return self._sessions[threads]

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        session = self._session(1 if len(texts) == 1 else 0)
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            picked = order[start:start + self.batch_size]
            encoded = self.tokenizer.encode_batch([texts[i] for i in picked])
            feed = {
                "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
            }
            out[picked] = session.run(None, feed)[0]
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out
