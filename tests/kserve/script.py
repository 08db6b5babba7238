"""A KServe script the serving tests run as a subprocess (tests/kserve/test_serving.py).

Models:
- "echo": V2 answers its inputs as outputs of the same names; V1 answers {"predictions": instances}.
  A request names an error to raise (V2 parameter or V1 key "raise": a kserve.errors name, or
  ValueError / NotImplementedError). It returns the header x-probe as the response parameter
  "probe" (V2) or key "probe" (V1), and sets the response header x-echo. With the V2 parameter
  "as_string" it answers each BYTES input with what its `as_string()` gives.
- "info": holds BIG_MIB of weights; answers (V1) the process ids and its load and start counts.

`--hazard thread` starts a thread in load(); `--hazard loop` calls start() in an event loop: both
must be refused before anything is forked.
"""

import argparse
import asyncio
import os
import threading
import time

import numpy as np

from gateway.kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, errors, model_server

BIG_MIB = 64


def _raise(name: str):
    if name in ("ValueError", "NotImplementedError"):
        raise {"ValueError": ValueError, "NotImplementedError": NotImplementedError}[name](f"asked to raise {name}")
    error = getattr(errors, name)
    raise error("scaler") if name in ("ModelNotReady", "ModelNotFound") else error(f"asked to raise {name}")


class Echo(Model):
    def __init__(self, name: str):
        super().__init__(name, return_response_headers=True)

    async def predict(self, payload, headers=None, response_headers=None):
        response_headers["x-echo"] = "yes"
        probe = (headers or {}).get("x-probe")
        if isinstance(payload, dict):
            if "raise" in payload:
                _raise(payload["raise"])
            return {"predictions": payload["instances"], "probe": probe}
        request: InferRequest = payload
        if request.parameters and "raise" in request.parameters:
            _raise(request.parameters["raise"])
        outputs = []
        for infer_input in request.inputs:
            output = InferOutput(infer_input.name, list(infer_input.shape), infer_input.datatype)
            data = infer_input.as_numpy()
            if request.parameters and "as_string" in request.parameters and infer_input.datatype == "BYTES":
                data = np.array(infer_input.as_string(), dtype=object).reshape(data.shape)
            output.set_data_from_numpy(data)
            outputs.append(output)
        return InferResponse(request.id, self.name, outputs, parameters={"probe": probe} if probe else None)


class Info(Model):
    load_calls = 0

    def load(self) -> bool:
        Info.load_calls += 1
        self.loaded_in = os.getpid()
        self.weights = np.ones(BIG_MIB * 1024 * 1024 // 8)  # written: real pages, shared with the workers
        self.ready = True
        return True

    def start(self):
        self.started_in = os.getpid()
        self.threads_at_start = threading.active_count()

    async def predict(self, payload, headers=None, response_headers=None):
        return {
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "loaded_in": self.loaded_in,
            "load_calls": Info.load_calls,
            "started_in": self.started_in,
            "threads_at_start": self.threads_at_start,
            "weights_sum": float(self.weights.sum()),
        }


class Threaded(Model):
    def load(self) -> bool:
        threading.Thread(target=time.sleep, args=(60,), name="model-poller", daemon=True).start()
        self.ready = True
        return True


parser = argparse.ArgumentParser(parents=[model_server.parser])
parser.add_argument("--hazard", choices=("thread", "loop"))

if __name__ == "__main__":
    args, _ = parser.parse_known_args()
    if args.hazard == "thread":
        threaded = Threaded("threaded")
        threaded.load()
        ModelServer().start([threaded])
    elif args.hazard == "loop":
        echo = Echo("echo")
        echo.load()

        async def in_a_loop():
            ModelServer().start([echo])

        asyncio.run(in_a_loop())
    else:
        echo, info = Echo("echo"), Info("info")
        echo.load()
        info.load()
        ModelServer().start([echo, info])
