"""A sentence-transformers model run by ONNX Runtime: exported once, then no torch at all.

``ensure_exported`` turns the model into ``model.onnx`` (fp32, mean pooling inside the
graph) and ``model-int8.onnx`` (dynamic int8 weights) beside its ``tokenizer.json``, in a
folder of the model cache. Like the chat model's conversion it runs under a file lock and
the folder appears by an atomic rename: absent or complete, never half written.

``OnnxEncoder`` tokenizes with the ``tokenizers`` library, runs the file, and returns
L2-normalised float32 rows, identical (cosine >= 0.99999) to sentence-transformers' own for
fp32, one text per call on a thread per core unless ``DOCCHAT_EMBED_BATCH_SIZE`` says otherwise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FILES = {"fp32": "model.onnx", "int8": "model-int8.onnx"}
TOKENIZER = "tokenizer.json"
CONFIG = "encoder.json"
EXPORT_VERSION = 3  # bump when the export changes, so stale folders are not reused (2: fused; 3: int8 nodes chosen)
# Operators whose weights the int8 file may quantize (which of them: int8_nodes).
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
    _quantize(out / FILES["fp32"], out / FILES["int8"], transformer.auto_model.config)
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


def _quantize(fp32: Path, target: Path, config) -> None:
    """The int8 file: the matrix products ``int8_nodes`` picks; the token embeddings, layer norms
    and the rest stay fp32. A graph where it picks none is copied whole (an empty list would tell
    the quantizer to take every node)."""
    import onnx

    nodes = int8_nodes(onnx.load(str(fp32), load_external_data=False).graph, config)
    if nodes:
        quantize(fp32, target, nodes=nodes)
    else:
        shutil.copyfile(fp32, target)


def quantize(fp32: Path, target: Path, *, nodes: list[str] | None = None, ops: list[str] = QUANTIZED_OPS,
             exclude: list[str] | None = None) -> None:
    """Dynamic int8 weights, per output channel, for the nodes of ``ops`` (only ``nodes`` when
    given, none of ``exclude``): the export's recipe, and the benchmarks' variants of it."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=ops,
                     nodes_to_quantize=nodes, nodes_to_exclude=exclude,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def int8_nodes(graph, config) -> list[str]:
    """The nodes whose weights go int8: every layer's attention, and the feed-forward matrices of
    the later half of the layers. The earlier feed-forward ones stay fp32: their inputs have
    outliers that one int8 scale per call cannot hold, and quantized they made most of int8's
    error (all-MiniLM-L6-v2, one node quantized at a time: bench/RESULTS-scale.md, Round 9).

    A feed-forward matrix is one with ``intermediate_size`` rows or columns; the graph lists
    nodes in order, so each up-projection (``intermediate_size`` columns) starts a layer."""
    shapes = {weight.name: tuple(weight.dims) for weight in graph.initializer}
    width, fp32_layers = int(config.intermediate_size), int(config.num_hidden_layers) // 2
    chosen, layer = [], 0
    for node in graph.node:
        if node.op_type == "Attention":
            chosen.append(node.name)
        elif node.op_type == "MatMul" and len(shapes.get(node.input[1], ())) == 2:
            rows, columns = shapes[node.input[1]]
            layer += columns == width
            if width not in (rows, columns) or layer > fp32_layers:
                chosen.append(node.name)
    return chosen


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
    """``encode(texts) -> float32 (n, dim)`` rows L2-normalised, from an exported folder.

    One session with one intra-op thread, run by ``workers`` threads at once (ONNX Runtime lets
    threads share a session): a single question runs on the caller's thread, many texts go one
    call per ``batch_size`` texts to a worker per core. Two threads inside each call spend their
    time waiting on each other, the more so when another process holds a core
    (bench/RESULTS-scale.md, Round 9).
    """

    def __init__(self, folder: Path, precision: str = "int8", batch_size: int = 1, model_file: Path | None = None,
                 workers: int | None = None):
        from tokenizers import Tokenizer

        self.folder, self.precision, self.batch_size = folder, precision, batch_size
        self.model_file = model_file or folder / FILES[precision]  # another file: a benchmark's variant
        self.workers = workers or available_cores()
        self.config = json.loads((folder / CONFIG).read_text())
        self.dim = int(self.config["dim"])
        self.tokenizer = Tokenizer.from_file(str(folder / TOKENIZER))
        self.tokenizer.enable_truncation(max_length=int(self.config["max_length"]))
        self.tokenizer.enable_padding(pad_id=int(self.config["pad_id"]))
        self._session = None
        self._session_lock = threading.Lock()

    @property
    def session(self):
        with self._session_lock:  # two first calls at once build one session
            if self._session is None:
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.intra_op_num_threads = 1
                options.inter_op_num_threads = 1
                options.log_severity_level = 3
                self._session = ort.InferenceSession(str(self.model_file), options, providers=["CPUExecutionProvider"])
            return self._session

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        session = self.session
        order = np.argsort([len(t) for t in texts], kind="stable")  # padding only within a batch of like lengths
        batches = [order[start:start + self.batch_size] for start in range(0, len(texts), self.batch_size)]
        feeds = [self._feed([texts[i] for i in picked]) for picked in batches]  # tokenized here, not in the workers
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        workers = min(self.workers, len(batches))
        if workers == 1:
            rows = [session.run(None, feed)[0] for feed in feeds]
        else:
            pool = ThreadPoolExecutor(workers, thread_name_prefix="embed")
            try:
                rows = list(pool.map(lambda feed: session.run(None, feed)[0], feeds))
            finally:  # interrupted (Ctrl-C, an error): wait for the calls running, drop the queued ones
                pool.shutdown(wait=True, cancel_futures=True)
        for picked, vectors in zip(batches, rows):
            out[picked] = vectors
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def _feed(self, texts: list[str]) -> dict[str, np.ndarray]:
        encoded = self.tokenizer.encode_batch(texts)
        return {
            "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
        }


def available_cores() -> int:
    """The cores this process may run on (its affinity where the system says, else all)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)
