"""Latency of one large tensor through a V2 server: binary REST echo, sequential calls.

    python scripts/echo_latency.py --url 127.0.0.1:8080 --model echo --mib 64 --calls 20

The model must return its input (any V2 server's echo model). Prints p50/p90
and the mean in milliseconds, and checks every answer byte for byte.
"""

import argparse
import statistics
import time

import numpy as np
import tritonclient.http as httpclient


def measure(url: str, model: str, mib: float, calls: int, warmup: int = 3) -> dict:
    client = httpclient.InferenceServerClient(url, network_timeout=300, connection_timeout=60)
    array = np.random.default_rng(0).random(int(mib * 1024 * 1024 // 4), dtype=np.float32)
    tensor = httpclient.InferInput("x", [array.size], "FP32")
    tensor.set_data_from_numpy(array)
    wanted = [httpclient.InferRequestedOutput("x", binary_data=True)]
    timings = []
    for i in range(warmup + calls):
        started = time.perf_counter()
        result = client.infer(model, [tensor], outputs=wanted)
        elapsed = time.perf_counter() - started
        if not np.array_equal(result.as_numpy("x"), array):
            raise SystemExit("the echo did not return the input")
        if i >= warmup:
            timings.append(elapsed * 1000)
    client.close()
    timings.sort()
    return {
        "mib": mib,
        "calls": calls,
        "p50_ms": statistics.median(timings),
        "p90_ms": timings[int(0.9 * (len(timings) - 1))],
        "mean_ms": statistics.fmean(timings),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="127.0.0.1:8080", help="host:port of the REST endpoint")
    parser.add_argument("--model", default="echo")
    parser.add_argument("--mib", type=float, default=64)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    result = measure(args.url, args.model, args.mib, args.calls)
    print(f"{args.mib:g} MiB FP32 echo, {args.calls} calls: p50 {result['p50_ms']:.1f} ms, p90 {result['p90_ms']:.1f} ms, mean {result['mean_ms']:.1f} ms")


if __name__ == "__main__":
    main()
