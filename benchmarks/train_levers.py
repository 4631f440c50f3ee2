"""The levers of issue 21 on a CPU training step, each measured against the default, in one process.

Each lever is timed in interleaved rounds with its baseline (median seconds per step) on the
cpu-study's shapes (d_model 64 unless said) at 1,024-token steps, and checked for bit-identity: the same
losses, gradient norms and final weights after ``IDENTITY_STEPS`` steps from the same start.
A lever that changes rounding is reported, not used (the study's runs must stay reproducible).

- ``grouped_mm`` (kept): the expert GEMMs through ``torch._grouped_mm`` (a C++ loop) vs the Python
  loop, on every shape of the MFU table;
- ``adamw``: AdamW's for-loop (runner.train's CPU default) vs foreach vs fused;
- ``compile``: ``torch.compile`` (inductor) of the model vs eager;
- ``fused_qkv`` / ``fused_gate_up``: one GEMM for q, k, v (for SwiGLU's gate and up) vs separate
  ones, forward + backward at the step's shapes (the model keeps separate weights);
- ``threads``: one process at 1 and 2 threads, and two 1-thread processes side by side.

Called by ``bench_train.py --levers``.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from bench_train import Stepper, study_arch

IDENTITY_STEPS = 20
TOKENS = 1024


def _trace(stepper: Stepper, steps: int) -> list[tuple]:
    out = []
    for _ in range(steps):
        stepper.step()
        out.append(stepper.last)
    return out


def compare(base, variant, *, rounds: int = 3, steps: int = 15, switch=None) -> dict:
    """Seconds per step of two Steppers (interleaved rounds, median) and whether they train alike.

    ``switch(which)`` is called before each of them runs ("base" or "variant"), e.g. to set a flag.
    """
    switch = switch or (lambda which: None)
    traces = {}
    for which, s in (("base", base), ("variant", variant)):
        switch(which)
        t0 = time.perf_counter()
        s.step()  # first step (a compile happens here)
        first = time.perf_counter() - t0
        traces[which] = [s.last] + _trace(s, IDENTITY_STEPS - 1)
        if which == "variant":
            first_variant = first
    same = traces["base"] == traces["variant"] and all(
        torch.equal(a, b) for a, b in zip(base.model.parameters(), variant.model.parameters())
    )
    times = {"base": [], "variant": []}
    for _ in range(rounds):
        for which, s in (("base", base), ("variant", variant)):
            switch(which)
            t0 = time.perf_counter()
            for _ in range(steps):
                s.step()
            times[which].append((time.perf_counter() - t0) / steps)
    switch("base")
    tb, tv = statistics.median(times["base"]), statistics.median(times["variant"])
    return {"base_s": tb, "variant_s": tv, "speedup": tb / tv, "bit_identical": same, "first_step_s": first_variant}


def lever_grouped_mm(corpus) -> dict:
    """Expert GEMMs through torch._grouped_mm (kept) against the Python loop (before issue 21), on
    each shape of the MFU table (the dense models, which have no expert GEMMs, as a control)."""
    from runner.kernels import grouped_torch

    native = grouped_torch.USE_NATIVE

    def switch(which):
        grouped_torch.USE_NATIVE = native if which == "variant" else False

    out = {}
    for d in (64, 128):
        for E in (1, 8, 32):
            arch = study_arch(d, E)
            name = f"d{d} {'dense' if E == 1 else f'E{E} k1'}"
            out[name] = compare(Stepper(arch, TOKENS, corpus), Stepper(arch, TOKENS, corpus), switch=switch)
    grouped_torch.USE_NATIVE = native
    return out


def lever_adamw(corpus) -> dict:
    out = {}
    for name, kw in (("foreach", {"foreach": True}), ("fused", {"foreach": False, "fused": True})):
        for E in (1, 8):
            arch = study_arch(64, E)
            r = compare(Stepper(arch, TOKENS, corpus, foreach=False), Stepper(arch, TOKENS, corpus, **kw))
            out[f"{name} d64 {'dense' if E == 1 else f'E{E} k1'}"] = r
    return out


def lever_compile(corpus) -> dict:
    """The dense model only: an MoE's expert boundaries are Python ints that change every step
    (``grouped_torch``'s host sync), so a compiled MoE would recompile step after step."""
    arch = study_arch(64, 1)
    try:
        return {"d64 dense": compare(Stepper(arch, TOKENS, corpus), Stepper(arch, TOKENS, corpus, compile=True))}
    except Exception as exc:  # inductor needs a C++ compiler; say why it did not run
        return {"d64 dense": {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}}


def fused_linear(rows: int, seq: int, d_in: int, widths: tuple[int, ...], reps: int = 200) -> dict:
    """Forward + backward of len(widths) linears on one input, separate vs one GEMM on the
    concatenated weight: seconds of each, and whether outputs and gradients are bit-identical."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(rows, seq, d_in, generator=g)
    ws0 = [torch.randn(n, d_in, generator=g) * 0.02 for n in widths]
    gys = [torch.randn(rows, seq, n, generator=g) for n in widths]

    def separate():
        x = x0.clone().requires_grad_()
        ws = [w.clone().requires_grad_() for w in ws0]
        ys = [F.linear(x, w) for w in ws]
        torch.autograd.backward(ys, gys)
        return ys, x.grad, [w.grad for w in ws]

    w_cat0, gy_cat = torch.cat(ws0), torch.cat(gys, dim=-1)

    def fused():
        x, w = x0.clone().requires_grad_(), w_cat0.clone().requires_grad_()
        y = F.linear(x, w)
        y.backward(gy_cat)
        return list(y.split(widths, dim=-1)), x.grad, list(w.grad.split(widths))

    (ya, dxa, dwa), (yb, dxb, dwb) = separate(), fused()
    same = {"outputs": all(torch.equal(a, b) for a, b in zip(ya, yb)), "input_grad": torch.equal(dxa, dxb),
            "weight_grads": all(torch.equal(a, b) for a, b in zip(dwa, dwb))}  # fmt: skip
    times = {"separate": [], "fused": []}
    for _ in range(5):
        for name, fn in (("separate", separate), ("fused", fused)):
            t0 = time.perf_counter()
            for _ in range(reps // 5):
                fn()
            times[name].append((time.perf_counter() - t0) / (reps // 5))
    ts, tf = statistics.median(times["separate"]), statistics.median(times["fused"])
    return {"separate_s": ts, "fused_s": tf, "speedup": ts / tf, "bit_identical": all(same.values()), "identical": same}


def lever_fused_linears() -> dict:
    rows = TOKENS // 128
    return {
        "fused_qkv d64": fused_linear(rows, 128, 64, (64, 64, 64)),
        "fused_gate_up d64 dense": fused_linear(rows, 128, 64, (128, 128)),
    }


def _worker_tokens_per_s(seconds: float) -> float:
    torch.set_num_threads(1)
    from runner.data import load_corpus

    from bench_train import STUDY_DATA

    s = Stepper(study_arch(64, 8), TOKENS, load_corpus(STUDY_DATA, seed=0))
    s.step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        s.step()
        n += 1
    return n * TOKENS / (time.perf_counter() - t0)


def lever_threads(corpus, threads: int, seconds: float = 8.0) -> dict:
    """tokens/s of d64 E8 k1: one process at 1 and at ``threads`` threads, and two 1-thread processes at once."""
    import multiprocessing

    arch = study_arch(64, 8)
    s = Stepper(arch, TOKENS, corpus)
    res = {}
    for n in (1, threads, 1, threads):
        torch.set_num_threads(n)
        s.step()
        k, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 2:
            s.step()
            k += 1
        res.setdefault(n, []).append(k * TOKENS / (time.perf_counter() - t0))
    torch.set_num_threads(threads)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        both = pool.map(_worker_tokens_per_s, [seconds, seconds])
    one = statistics.median(res[1])
    return {"1 thread": one, f"{threads} threads": statistics.median(res[threads]), "2 processes x 1 thread": sum(both),
            "per process": both}  # fmt: skip


def run_all(corpus, threads: int) -> dict:
    """Every lever; prints one line each and returns the numbers."""
    print(f"\nlevers (d_model 64, {TOKENS:,}-token steps, {torch.get_num_threads()} threads; bit-identical = the same "
          f"losses, grad norms and weights after {IDENTITY_STEPS} steps)")  # fmt: skip
    out = {"grouped_mm": lever_grouped_mm(corpus), "adamw": lever_adamw(corpus),
           "compile": lever_compile(corpus), "fused_linears": lever_fused_linears()}  # fmt: skip
    labels = {"grouped_mm": "torch._grouped_mm vs Python loop",
              "adamw": "AdamW vs for-loop", "compile": "torch.compile vs eager",
              "fused_linears": "one GEMM vs separate (fwd+bwd)"}  # fmt: skip
    for lever, rows in out.items():
        for name, r in rows.items():
            if "error" in r:
                print(f"  {labels[lever]:<34} {name:<24} did not run: {r['error']}")
                continue
            base, var = r.get("base_s", r.get("separate_s")), r.get("variant_s", r.get("fused_s"))
            extra = f", first step {r['first_step_s']:.1f} s" if "first_step_s" in r else ""
            print(f"  {labels[lever]:<34} {name:<24} {1e3 * base:8.2f} -> {1e3 * var:8.2f} ms  {r['speedup']:5.2f}x  "
                  f"bit-identical: {'yes' if r['bit_identical'] else 'NO'}{extra}")  # fmt: skip
    out["threads"] = lever_threads(corpus, threads)
    t = out["threads"]
    print(f"  threads (d64 E8 k1, tokens/s): " + ", ".join(f"{k} {v:,.0f}" for k, v in t.items() if k != "per process"))
    return out
