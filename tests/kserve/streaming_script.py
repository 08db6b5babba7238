"""A KServe script whose models answer V1 predicts with async iterators, streamed as KServe
streams them (tests/kserve/test_streaming.py runs it as a subprocess).

Models:
- "streamer": `predict` says it returns an async iterator (its annotation) and returns one for a
  V1 body {"chunks": n}: the chunks "chunk 0;", "chunk 1;", ... A V1 body may also ask for
  "fail_after" (raise before that chunk), "bad_chunk" (yield a dict), "wait_for" (a file that must
  exist before the second chunk is yielded), "marker" (a file its generator writes "closed <pid>"
  to when it ends or is closed), "big" (a first chunk of that many bytes); {"whole": x} is
  answered at once with {"predictions": x}. V2: an echo of its inputs; with the parameter
  "stream", an async iterator (which V2 does not stream).
- "shout": `predict` is an async generator (no annotation) of the words of {"text": ...};
  `postprocess` upper-cases each chunk of the iterator it is given.
- "undeclared": a plain `predict` that returns an async iterator without saying so.
"""

import asyncio
import os
from pathlib import Path
from typing import AsyncIterator, Union

from gateway.kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer


class Streamer(Model):
    def load(self) -> bool:
        self.ready = True
        return self.ready

    async def predict(self, payload, headers=None) -> Union[InferResponse, dict, AsyncIterator[str]]:
        if isinstance(payload, InferRequest):
            if payload.parameters and payload.parameters.get("stream"):
                return self._chunks({"chunks": 2})
            outputs = []
            for infer_input in payload.inputs:
                output = InferOutput(infer_input.name, list(infer_input.shape), infer_input.datatype)
                output.set_data_from_numpy(infer_input.as_numpy())
                outputs.append(output)
            return InferResponse(payload.id, self.name, outputs)
        if "whole" in payload:
            return {"predictions": payload["whole"]}
        return self._chunks(payload)

    async def _chunks(self, asked: dict) -> AsyncIterator[Union[str, bytes]]:
        try:
            if asked.get("big"):
                yield b"b" * asked["big"]
            for index in range(asked["chunks"]):
                if index == asked.get("fail_after"):
                    raise RuntimeError(f"the stream broke before chunk {index}")
                if asked.get("bad_chunk"):
                    yield {"not": "text"}  # type: ignore[misc]
                if index == 1 and asked.get("wait_for"):
                    while not Path(asked["wait_for"]).exists():  # the client has read chunk 0
                        await asyncio.sleep(0.01)
                yield f"chunk {index};"
                await asyncio.sleep(0)
        finally:
            if asked.get("marker"):
                Path(asked["marker"]).write_text(f"closed {os.getpid()}")


class Shout(Model):
    def load(self) -> bool:
        self.ready = True
        return self.ready

    async def predict(self, payload, headers=None):
        for word in payload["text"].split():
            yield word + " "

    async def postprocess(self, result, headers=None):
        async def upper():
            async for chunk in result:
                yield chunk.upper()

        return upper()


class Undeclared(Model):
    def load(self) -> bool:
        self.ready = True
        return self.ready

    def predict(self, payload, headers=None):
        async def chunks():
            yield "never sent"

        return chunks()


if __name__ == "__main__":
    models = [Streamer("streamer"), Shout("shout"), Undeclared("undeclared")]
    for model in models:
        model.load()
    ModelServer(workers=1).start(models)
