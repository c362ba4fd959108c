"""PyTorch CPU sgemm at the matmul benchmark's shapes: the reference `imba bench matmul` is
compared with in the same run (scripts/bench_matmul_vs_torch.sh). Times C = A·B + bias and
C = A·Bᵀ + bias (torch.addmm, f32, all cores), median of --reps runs after warm-up."""

import argparse
import os
import statistics
import time
import warnings

# The CPU timing needs no NumPy; torch warns when it is absent.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--shape", action="append", help="M,K,N (repeatable)")
    args = ap.parse_args()
    shapes = [tuple(int(x) for x in s.split(",")) for s in args.shape] if args.shape else [
        (1024, 64, 192), (1024, 256, 64), (4096, 128, 512), (1024, 1024, 1024)]
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads, f32")
    print()
    print("| (M, K, N) | product | PyTorch ms | PyTorch GFLOP/s |")
    print("|---|---|---:|---:|")
    for m, k, n in shapes:
        a = torch.rand(m, k, generator=g) * 2 - 1
        bias = torch.rand(n, generator=g) * 2 - 1
        for name, b in (("A·B", torch.rand(k, n, generator=g) * 2 - 1),
                        ("A·Bᵀ", (torch.rand(n, k, generator=g) * 2 - 1).t())):
            out = torch.empty(m, n)
            for _ in range(3):
                torch.addmm(bias, a, b, out=out)
            times = []
            for _ in range(args.reps):
                t0 = time.perf_counter()
                torch.addmm(bias, a, b, out=out)
                times.append((time.perf_counter() - t0) * 1e3)
            ms = statistics.median(times)
            print(f"| ({m}, {k}, {n}) | {name} | {ms:.3f} | {2 * m * k * n / (ms * 1e6):.1f} |")


if __name__ == "__main__":
    main()
