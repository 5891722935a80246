"""MQAR trained in JAX with polygrad's model, task and optimiser: a peer for `polygrad train`.

Same architecture as polygrad's language model (pre-LayerNorm blocks, q/k/v/o without biases,
tanh-GELU MLP, final LayerNorm, learned positions, head tied to the token embedding, exact causal
softmax attention scaled by 1/sqrt(d_qk)), GPT-2 initialisation (normal 0.02, attn.o and fc2 by
1/sqrt(2L)), AdamW with bias correction, decoupled decay of matrices and clipping by the global
norm, and MQAR drawn as src/train.rs draws it (keys from the vocabulary's lower half, distinct;
values from its upper half; queries fill the rest; the target at a query is its key's value).
The batches come from numpy, not polygrad's generator, so the curves are comparable in
distribution, not step for step.

    python3 tools/peer/mqar_jax.py --pairs 2 --vocab 16 --seq-len 8 --steps 4000 --csv jax.csv
    python3 tools/peer/mqar_jax.py --lr 3e-3    # polygrad train's old default: stays on the plateau
"""

import argparse
import csv
import math
import time

import jax
import jax.numpy as jnp
import numpy as np


def init(rng, a):
    d, f = a.width, a.mlp
    inner = a.heads * a.head_dim
    keys = iter(jax.random.split(rng, 4 + 6 * a.layers))
    normal = lambda shape, scale=1.0: 0.02 * scale * jax.random.normal(next(keys), shape)
    resid = 1.0 / math.sqrt(2 * a.layers)
    p = {"tok": normal((a.vocab, d)), "pos": normal((a.seq_len, d)),
         "lnf_w": jnp.ones(d), "lnf_b": jnp.zeros(d), "blocks": []}
    for _ in range(a.layers):
        p["blocks"].append({
            "ln1_w": jnp.ones(d), "ln1_b": jnp.zeros(d),
            "q": normal((inner, d)), "k": normal((inner, d)), "v": normal((inner, d)),
            "o": normal((d, inner), resid),
            "ln2_w": jnp.ones(d), "ln2_b": jnp.zeros(d),
            "fc1": normal((f, d)), "fc1_b": jnp.zeros(f),
            "fc2": normal((d, f), resid), "fc2_b": jnp.zeros(d),
        })
    return p


def layer_norm(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / jnp.sqrt(var + eps) * w + b


def gelu(t):
    return 0.5 * t * (1 + jnp.tanh(math.sqrt(2 / math.pi) * (t + 0.044715 * t ** 3)))


def forward(p, ids, a):
    n = ids.shape[1]
    x = p["tok"][ids] + p["pos"][:n]
    mask = jnp.tril(jnp.ones((n, n), bool))
    split = lambda t: t.reshape(t.shape[0], n, a.heads, a.head_dim).transpose(0, 2, 1, 3)
    for blk in p["blocks"]:
        h = layer_norm(x, blk["ln1_w"], blk["ln1_b"])
        q, k, v = (split(h @ blk[w].T) for w in ("q", "k", "v"))
        s = jnp.where(mask, q @ k.transpose(0, 1, 3, 2) / math.sqrt(a.head_dim), -jnp.inf)
        o = (jax.nn.softmax(s, -1) @ v).transpose(0, 2, 1, 3).reshape(x.shape[0], n, -1)
        x = x + o @ blk["o"].T
        h = layer_norm(x, blk["ln2_w"], blk["ln2_b"])
        x = x + gelu(h @ blk["fc1"].T + blk["fc1_b"]) @ blk["fc2"].T + blk["fc2_b"]
    return layer_norm(x, p["lnf_w"], p["lnf_b"]) @ p["tok"].T


def loss_fn(p, ids, targets, a):
    logits = forward(p, ids, a)
    keep = targets >= 0
    logp = jax.nn.log_softmax(logits, -1)
    picked = jnp.take_along_axis(logp, jnp.maximum(targets, 0)[..., None], -1)[..., 0]
    loss = -(picked * keep).sum() / keep.sum()
    right = ((logits.argmax(-1) == targets) & keep).sum() / keep.sum()
    return loss, right


def batch(rng, a):
    half = a.vocab // 2
    ids = np.empty((a.batch, a.seq_len), np.int32)
    targets = np.full((a.batch, a.seq_len), -1, np.int32)
    for b in range(a.batch):
        keys = rng.choice(half, a.pairs, replace=False)
        values = rng.integers(half, a.vocab, a.pairs)
        ids[b, : 2 * a.pairs : 2], ids[b, 1 : 2 * a.pairs : 2] = keys, values
        which = rng.integers(0, a.pairs, a.seq_len - 2 * a.pairs)
        ids[b, 2 * a.pairs :], targets[b, 2 * a.pairs :] = keys[which], values[which]
    return jnp.asarray(ids), jnp.asarray(targets)


def main():
    ap = argparse.ArgumentParser()
    for name, value in [("pairs", 2), ("vocab", 16), ("seq-len", 8), ("layers", 2),
                        ("width", 64), ("heads", 2), ("head-dim", 32), ("mlp", 128),
                        ("steps", 4000), ("batch", 64), ("seed", 1)]:
        ap.add_argument("--" + name, type=int, default=value)
    ap.add_argument("--lr", type=float, default=1e-3)  # polygrad train's default
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--csv")
    a = ap.parse_args()
    params = init(jax.random.PRNGKey(a.seed), a)
    m = jax.tree.map(jnp.zeros_like, params)
    v = jax.tree.map(jnp.zeros_like, params)
    decays = jax.tree.map(lambda t: t.ndim == 2, params)

    @jax.jit
    def step(params, m, v, t, ids, targets):
        (loss, right), g = jax.value_and_grad(loss_fn, has_aux=True)(params, ids, targets, a)
        norm = jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree.leaves(g)))
        scale = jnp.where((a.clip > 0) & (norm > a.clip), a.clip / norm, 1.0)
        g = jax.tree.map(lambda x: x * scale, g)
        m = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
        v = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)
        bc1, bc2 = 1 - 0.9 ** t, 1 - 0.999 ** t

        def update(p, m, v, d):
            p = jnp.where(d, p * (1 - a.lr * a.weight_decay), p)
            return p - a.lr / bc1 * m / (jnp.sqrt(v) / jnp.sqrt(bc2) + 1e-8)

        return jax.tree.map(update, params, m, v, decays), m, v, loss, right

    rng = np.random.default_rng(a.seed)
    rows, start = [], time.time()
    for t in range(1, a.steps + 1):
        ids, targets = batch(rng, a)
        params, m, v, loss, right = step(params, m, v, t, ids, targets)
        rows.append((t, float(loss), float(right), time.time() - start))
        if t % 250 == 0:
            block = rows[-250:]
            print(f"step {t}: loss {np.mean([r[1] for r in block]):.4f} "
                  f"accuracy {np.mean([r[2] for r in block]):.3f}", flush=True)
    if a.csv:
        with open(a.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "loss", "accuracy", "elapsed_s"])
            w.writerows(rows)


if __name__ == "__main__":
    main()
