"""Writes the tiny random Llama GGUF fixture and its PyTorch reference logits (committed).

    /root/venvs/torch/bin/pip install gguf accelerate
    /root/venvs/torch/bin/python tools/gguf_fixture.py            # llama: tests/fixtures/llama_tiny.gguf, golden/gguf/llama_tiny/
    /root/venvs/torch/bin/python tools/gguf_fixture.py --arch qwen2   # qwen2: tests/fixtures/qwen2_tiny.gguf, golden/gguf/qwen2_tiny/

The model: llama architecture, 3 layers, hidden 64, 4 query heads sharing 2 KV heads (GQA),
head size 16, SwiGLU 256, RoPE base 50000, RMSNorm eps 1e-5, tied head (no output.weight),
context 64, a byte-level BPE of 300 tokens trained on tools/texts/calibration.txt. Every
tensor type the importer reads appears: norms F32, embedding Q8_0, attention Q4_0/Q4_1/Q5_0/
Q5_1/F16/BF16, ffn_down Q4_K/Q5_K/Q6_K (random block bytes with small super-scales: the gguf
package cannot quantize K types, any bytes are valid blocks). With --arch qwen2 the same model
is written as qwen2 (Q/K rows in Hugging Face order, no interleaving), with F32 biases on
Q/K/V and an untied Q8_0 head (output.weight).

transformers loads the GGUF (dequantizing it with the gguf package, undoing llama.cpp's Q/K row
interleaving) into a float32 LlamaForCausalLM; the references are its logits for PROMPT's
tokens, and the token ids its GGUF tokenizer gives PROMPT:

    <refs>/input_ids.npy   int64 [1, S]
    <refs>/logits.npy      float32 [1, S, 300]
    <refs>/prompt.json     PROMPT, its ids, and the source type of every tensor

Deterministic (numpy PCG64 seed 14): a rerun writes the same files.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

PROMPT = "The keeper's daughter climbs the stairs of the old lighthouse at 9 every evening."
VOCAB = 300
LAYERS, HIDDEN, HEADS, KV_HEADS, FFN, CONTEXT = 3, 64, 4, 2, 256, 64
ROPE_BASE, RMS_EPS = 50000.0, 1e-5
EOS = "<|endoftext|>"


def train_bpe(text: str):
    """Byte-level BPE (tokens in id order, merges) trained on `text`."""
    tokenizers = c.require("tokenizers")
    tok = tokenizers.ByteLevelBPETokenizer()
    tok.train_from_iterator([text], vocab_size=VOCAB, min_frequency=1, special_tokens=[EOS], show_progress=False)
    with tempfile.TemporaryDirectory() as d:
        tok.save_model(d)
        vocab = json.loads((Path(d) / "vocab.json").read_text())
        merges = [m for m in (Path(d) / "merges.txt").read_text().splitlines() if m and not m.startswith("#")]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    if len(tokens) != VOCAB:
        c.fail(f"the BPE has {len(tokens)} tokens, expected {VOCAB}")
    return tokens, merges


def k_blocks(rng, qtype, rows: int, cols: int):
    """Random K-quant blocks with super-scales that keep weights around 0.02..0.1."""
    import numpy as np
    gguf = c.require("gguf")
    bs, ts = gguf.GGML_QUANT_SIZES[qtype]
    n = rows * cols // bs
    blocks = rng.integers(0, 256, size=(n, ts), dtype=np.uint8)
    if qtype == gguf.GGMLQuantizationType.Q6_K:
        blocks[:, 192:208] = rng.integers(-40, 40, size=(n, 16)).astype(np.int8).view(np.uint8)
        blocks[:, 208:210] = np.full(n, 1.5e-4, dtype=np.float16).view(np.uint8).reshape(n, 2)
    else:
        blocks[:, 0:2] = np.full(n, 2e-4, dtype=np.float16).view(np.uint8).reshape(n, 2)
        blocks[:, 2:4] = np.full(n, 1e-3, dtype=np.float16).view(np.uint8).reshape(n, 2)
    return blocks.reshape(rows, cols // bs * ts)


def write_gguf(path: Path, arch: str, tokens, merges, rng) -> dict:
    import numpy as np
    gguf = c.require("gguf")
    T = gguf.GGMLQuantizationType
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(f"{arch}-tiny-random")
    w.add_block_count(LAYERS)
    w.add_context_length(CONTEXT)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_dimension_count(HIDDEN // HEADS)
    w.add_rope_freq_base(ROPE_BASE)
    w.add_layer_norm_rms_eps(RMS_EPS)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_merges(merges)
    w.add_token_types([3 if t == EOS else 1 for t in tokens])
    w.add_bos_token_id(tokens.index(EOS))
    w.add_eos_token_id(tokens.index(EOS))
    types = {}

    def add(name: str, values, qtype):
        types[name] = qtype.name
        if qtype == T.F32:
            w.add_tensor(name, values.astype(np.float32))
        elif qtype == T.F16:
            w.add_tensor(name, values.astype(np.float16))
        else:
            w.add_tensor(name, gguf.quants.quantize(values.astype(np.float32), qtype), raw_dtype=qtype)

    def dense(rows, cols, std=0.08):
        return rng.normal(0.0, std, size=(rows, cols)).astype(np.float32)

    head_dim = HIDDEN // HEADS
    add("token_embd.weight", dense(VOCAB, HIDDEN, 0.5), T.Q8_0)
    attn_types = [(T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1), (T.F16, T.BF16, T.Q8_0, T.F32), (T.Q5_1, T.Q5_0, T.Q4_1, T.Q4_0)]
    down_types = [T.Q4_K, T.Q5_K, T.Q6_K]
    for i in range(LAYERS):
        q, k, v, o = attn_types[i]
        add(f"blk.{i}.attn_norm.weight", 1.0 + rng.normal(0, 0.1, HIDDEN), T.F32)
        add(f"blk.{i}.attn_q.weight", dense(HEADS * head_dim, HIDDEN, 0.3), q)
        add(f"blk.{i}.attn_k.weight", dense(KV_HEADS * head_dim, HIDDEN, 0.3), k)
        add(f"blk.{i}.attn_v.weight", dense(KV_HEADS * head_dim, HIDDEN), v)
        add(f"blk.{i}.attn_output.weight", dense(HIDDEN, HEADS * head_dim), o)
        if arch == "qwen2":
            for proj, rows in (("q", HEADS), ("k", KV_HEADS), ("v", KV_HEADS)):
                add(f"blk.{i}.attn_{proj}.bias", rng.normal(0, 0.2, rows * head_dim), T.F32)
        add(f"blk.{i}.ffn_norm.weight", 1.0 + rng.normal(0, 0.1, HIDDEN), T.F32)
        add(f"blk.{i}.ffn_gate.weight", dense(FFN, HIDDEN), T.F16 if i == 0 else T.Q8_0)
        add(f"blk.{i}.ffn_up.weight", dense(FFN, HIDDEN), T.BF16 if i == 0 else T.Q4_0)
        types[f"blk.{i}.ffn_down.weight"] = down_types[i].name
        w.add_tensor(f"blk.{i}.ffn_down.weight", k_blocks(rng, down_types[i], HIDDEN, FFN), raw_dtype=down_types[i])
    add("output_norm.weight", 1.0 + rng.normal(0, 0.1, HIDDEN), T.F32)
    if arch == "qwen2":
        add("output.weight", dense(VOCAB, HIDDEN, 0.5), T.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return types


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=["llama", "qwen2"], default="llama")
    ap.add_argument("--out-gguf", type=Path, help="default tests/fixtures/<arch>_tiny.gguf")
    ap.add_argument("--refs", type=Path, help="default golden/gguf/<arch>_tiny")
    args = ap.parse_args()
    args.out_gguf = args.out_gguf or c.FIXTURES / f"{args.arch}_tiny.gguf"
    args.refs = args.refs or c.REPO / "golden" / "gguf" / f"{args.arch}_tiny"
    tied = args.arch == "llama"
    np = c.require("numpy")
    torch = c.require("torch")
    transformers = c.require("transformers")
    c.require("gguf", hint="pip install gguf accelerate")
    rng = np.random.Generator(np.random.PCG64(14))
    text = (c.REPO / "tools" / "texts" / "calibration.txt").read_text()
    tokens, merges = train_bpe(text)
    args.out_gguf.parent.mkdir(parents=True, exist_ok=True)
    types = write_gguf(args.out_gguf, args.arch, tokens, merges, rng)
    folder, name = str(args.out_gguf.parent), args.out_gguf.name
    tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32,
                                                              attn_implementation="eager")
    model.eval()
    cfg = model.config
    got = (cfg.num_key_value_heads, round(cfg.rms_norm_eps, 9), cfg.max_position_embeddings)
    shared = torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)
    if got != (KV_HEADS, RMS_EPS, CONTEXT) or shared != tied:
        c.fail(f"transformers read the config as {cfg}")
    rope = getattr(cfg, "rope_parameters", None) or {"rope_theta": getattr(cfg, "rope_theta", None)}
    if rope.get("rope_theta") != ROPE_BASE:
        c.fail(f"transformers read RoPE as {rope}")
    ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits.float().numpy()
    args.refs.mkdir(parents=True, exist_ok=True)
    np.save(args.refs / "input_ids.npy", np.array([ids], dtype=np.int64))
    np.save(args.refs / "logits.npy", logits.astype(np.float32))
    meta = {"prompt": PROMPT, "input_ids": ids, "tensor_types": types,
            "transformers": transformers.__version__, "torch": torch.__version__}
    (args.refs / "prompt.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {c.rel(args.out_gguf)} ({args.out_gguf.stat().st_size} bytes), {len(ids)} prompt tokens, "
          f"logits {logits.shape} (|max| {abs(logits).max():.3f}) -> {c.rel(args.refs)}")


if __name__ == "__main__":
    main()
