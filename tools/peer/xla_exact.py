"""The CPU peer of `polygrad bench --attention exact`: plain f32 softmax attention (causal, one
head, d_qk = 16, d_v = 64, the n x n scores materialised) forward + backward in JAX, compiled by
XLA, on this machine's CPU cores. Written for polygrad's BENCHMARKS.md; run it in the same
session as the bench it is compared with.

  pip install jax==0.10.2 jaxlib==0.10.2
  python3 tools/peer/xla_exact.py [--n 1024,4096] [--reps 5]

Prints one CSV line per size: peer,n,d_qk,d_v,total_ms (median of --reps after a compiling
run).
"""
import argparse
import time

import jax
import jax.numpy as jnp


def softmax_attention(q, k, v):
    n, d = q.shape
    s = (q @ k.T) / jnp.sqrt(jnp.float32(d))
    s = jnp.where(jnp.tril(jnp.ones((n, n), bool)), s, -jnp.inf)
    return jax.nn.softmax(s, axis=-1) @ v


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", default="1024,4096")
    p.add_argument("--d-qk", type=int, default=16)
    p.add_argument("--d-v", type=int, default=64)
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args()
    print(f"# jax {jax.__version__} on {jax.devices()[0].device_kind}")
    print("peer,n,d_qk,d_v,total_ms")
    for n in [int(x) for x in a.n.split(",")]:
        keys = jax.random.split(jax.random.PRNGKey(n), 4)
        q = jax.random.normal(keys[0], (n, a.d_qk), jnp.float32)
        k = jax.random.normal(keys[1], (n, a.d_qk), jnp.float32)
        v = jax.random.normal(keys[2], (n, a.d_v), jnp.float32)
        g = jax.random.normal(keys[3], (n, a.d_v), jnp.float32)

        def loss(q, k, v):
            return jnp.sum(softmax_attention(q, k, v) * g)

        step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
        jax.block_until_ready(step(q, k, v))
        times = []
        for _ in range(a.reps):
            start = time.perf_counter()
            jax.block_until_ready(step(q, k, v))
            times.append(time.perf_counter() - start)
        times.sort()
        print(f"xla_exact_f32,{n},{a.d_qk},{a.d_v},{times[len(times) // 2] * 1e3:.3f}", flush=True)


if __name__ == "__main__":
    main()
