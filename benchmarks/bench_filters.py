"""Batched Gabor fitting (filters analysis) against a per-filter SciPy loop, side by side.

Both solve the same problems: every (filter, start) pair from ``fit._starts``, fitted
by Levenberg–Marquardt — batched in torch (``fit_gabors``) versus one
``scipy.optimize.least_squares(method="lm")`` call per pair in a Python loop (the
usual way Gabor fits are written). Prints seconds, the ratio, and how close the two
R² are.

    python benchmarks/bench_filters.py [--filters 32] [--size 11] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filters", type=int, default=32)
    parser.add_argument("--size", type=int, default=11)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from scipy.optimize import least_squares

    from probe.plugins.analyses.filters.fit import _project, _starts, _unpack, fit_gabors
    from probe.plugins.analyses.filters.gabor import gabor

    gen = torch.Generator().manual_seed(0)
    n, k = args.filters, args.size
    params = torch.zeros(n, 9, dtype=torch.float64)
    params[:, 0:2] = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 2 - 1
    params[:, 2] = torch.rand(n, generator=gen, dtype=torch.float64) * np.pi
    params[:, 3] = 0.1 + 0.25 * torch.rand(n, generator=gen, dtype=torch.float64)
    params[:, 4] = torch.rand(n, generator=gen, dtype=torch.float64) * 2 * np.pi
    params[:, 5:7] = 1.5 + 1.5 * torch.rand(n, 2, generator=gen, dtype=torch.float64)
    params[:, 7] = 1.0
    maps = gabor(params, (k, k))
    maps = maps + 0.05 * torch.randn(maps.shape, generator=gen, dtype=torch.float64)
    device = torch.device(args.device)

    fit_gabors(maps[:2].to(device))  # warm-up
    start = time.perf_counter()
    batched = fit_gabors(maps.to(device))
    if device.type == "cuda":
        torch.cuda.synchronize()
    t_batched = time.perf_counter() - start

    norm = maps.flatten(1).abs().amax(dim=1)
    work = maps / norm[:, None, None]
    starts = _starts(work, 4, 2)  # [N, S, 9] internal parameters, same as fit_gabors
    start = time.perf_counter()
    r2_loop = np.empty(n)
    for i in range(n):
        target = work[i].reshape(-1).numpy()
        best = np.inf
        for q0 in starts[i]:
            def resid(q, target=target):
                p = _unpack(torch.from_numpy(q))
                return gabor(p, (k, k)).reshape(-1).numpy() - target
            sol = least_squares(resid, _project(q0, (k, k)).numpy(), method="lm", max_nfev=400)
            best = min(best, float((sol.fun ** 2).sum()))
        sst = float(((target - target.mean()) ** 2).sum())
        r2_loop[i] = 1 - best / sst
    t_loop = time.perf_counter() - start

    r2_b = batched.r2.cpu().numpy()
    print(f"{n} filters {k}x{k}, {starts.shape[1]} starts each, threads={args.threads}, "
          f"device={device}")
    print(f"batched LM (torch):       {t_batched:8.2f} s   median R² {np.median(r2_b):.4f}")
    print(f"per-problem SciPy loop:   {t_loop:8.2f} s   median R² {np.median(r2_loop):.4f}")
    print(f"speed-up: {t_loop / t_batched:.1f}x;  max |ΔR²| {np.abs(r2_b - r2_loop).max():.4f}; "
          f"batched ≥ loop − 0.01 on {np.mean(r2_b >= r2_loop - 0.01) * 100:.0f}% of filters")


if __name__ == "__main__":
    main()
