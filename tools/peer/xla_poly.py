"""The CPU peer of `polygrad bench`: the same chunked polynomial attention (degree 2, causal,
one head, d_qk = 16, d_v = 64, chunks of 64) forward + backward in JAX, compiled by XLA, on this
machine's CPU cores. Written for polygrad's BENCHMARKS.md; run it in the same session as the
bench it is compared with.

  pip install jax==0.10.2 jaxlib==0.10.2
  python3 tools/peer/xla_poly.py [--n 1024,4096,16384,65536] [--reps 5]

Prints one CSV line per size: peer,n,d_qk,d_v,chunk,total_ms (median of --reps after a
compiling run).
"""
import argparse
import math
import time

import jax
import jax.numpy as jnp


def features2(x):
    # [.., d] -> [.., 1 + d + d(d+1)/2]: phi(u).phi(w) = 1 + s + s^2/2 for pre-scaled rows.
    d = x.shape[-1]
    i, j = jnp.triu_indices(d)
    coef = jnp.where(i == j, 1 / math.sqrt(2), 1.0).astype(x.dtype)
    quad = x[..., i] * x[..., j] * coef
    return jnp.concatenate([jnp.ones_like(x[..., :1]), x, quad], -1)


def poly_chunked(q, k, v, chunk):
    n, d = q.shape
    c = n // chunk
    q = q / d ** 0.25
    k = k / d ** 0.25
    fq, fk = features2(q), features2(k)
    f = fq.shape[-1]
    fq = fq.reshape(c, chunk, f)
    fk = fk.reshape(c, chunk, f)
    vc = v.reshape(c, chunk, -1)
    states = jnp.einsum("cif,civ->cfv", fk, vc)
    norms = fk.sum(1)
    states = jnp.cumsum(states, 0) - states
    norms = jnp.cumsum(norms, 0) - norms
    qc, kc = q.reshape(c, chunk, d), k.reshape(c, chunk, d)
    s = qc @ jnp.swapaxes(kc, -1, -2)
    a = jnp.tril(1 + s + s * s / 2)
    num = fq @ states + a @ vc
    den = (fq * norms[:, None, :]).sum(-1) + a.sum(-1)
    return (num / den[..., None]).reshape(n, -1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", default="1024,4096,16384,65536")
    p.add_argument("--d-qk", type=int, default=16)
    p.add_argument("--d-v", type=int, default=64)
    p.add_argument("--chunk", type=int, default=64)
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args()
    print(f"# jax {jax.__version__} on {jax.devices()[0].device_kind}")
    print("peer,n,d_qk,d_v,chunk,total_ms")
    for n in [int(x) for x in a.n.split(",")]:
        keys = jax.random.split(jax.random.PRNGKey(n), 4)
        q = jax.random.normal(keys[0], (n, a.d_qk), jnp.float32)
        k = jax.random.normal(keys[1], (n, a.d_qk), jnp.float32)
        v = jax.random.normal(keys[2], (n, a.d_v), jnp.float32)
        g = jax.random.normal(keys[3], (n, a.d_v), jnp.float32)

        def loss(q, k, v):
            return jnp.sum(poly_chunked(q, k, v, a.chunk) * g)

        step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
        jax.block_until_ready(step(q, k, v))
        times = []
        for _ in range(a.reps):
            start = time.perf_counter()
            jax.block_until_ready(step(q, k, v))
            times.append(time.perf_counter() - start)
        times.sort()
        print(f"xla_poly_chunked_g2,{n},{a.d_qk},{a.d_v},{a.chunk},{times[len(times) // 2] * 1e3:.3f}", flush=True)


if __name__ == "__main__":
    main()
