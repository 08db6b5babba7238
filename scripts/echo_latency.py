"""Latency of one large tensor through a V2 server: binary REST echo, sequential calls.

    python scripts/echo_latency.py --url 127.0.0.1:8080 --model echo --mib 64 --calls 20

The model must return its input (any V2 server's echo model). The client is
plain http.client with the body built once, so that the figures are the
server's, not a heavy client's (tritonclient adds ~140 ms per 64 MiB here).
Prints p50/p90 and the mean in milliseconds; every answer is checked byte for byte.
"""

import argparse
import http.client
import json
import statistics
import time

import numpy as np

HEADER_LENGTH = "Inference-Header-Content-Length"


def measure(url: str, model: str, mib: float, calls: int, warmup: int = 3) -> dict:
    host, _, port = url.rpartition(":")
    array = np.random.default_rng(0).random(int(mib * 1024 * 1024 // 4), dtype=np.float32)
    header = json.dumps(
        {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [array.size], "parameters": {"binary_data_size": array.nbytes}}],
            "outputs": [{"name": "x", "parameters": {"binary_data": True}}],
        }
    ).encode()
    body = header + array.tobytes()
    connection = http.client.HTTPConnection(host, int(port), timeout=300)
    timings = []
    for i in range(warmup + calls):
        started = time.perf_counter()
        connection.request("POST", f"/v2/models/{model}/infer", body=body, headers={HEADER_LENGTH: str(len(header))})
        response = connection.getresponse()
        answer = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise SystemExit(f"HTTP {response.status}: {answer[:300]!r}")
        json_length = int(response.getheader(HEADER_LENGTH))
        if answer[json_length:] != body[len(header) :]:
            raise SystemExit("the echo did not return the input")
        if i >= warmup:
            timings.append(elapsed * 1000)
    connection.close()
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
