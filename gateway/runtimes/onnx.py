"""ONNX models run by ONNX Runtime on the CPU (`gateway.runtimes.onnx.ONNXModel`).

The graph's inputs and outputs, with their names and types, are the model's:
its metadata reports them (unless model-settings.json declares its own), so the
front door checks requests against them. A request gets every tensor output of
the graph, or those it names, with the shapes the graph gives them.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..codecs import NumpyCodec
from ..errors import BadRequest
from ..model import MLModel
from ..types import Datatype, InferenceRequest, InferenceResponse, MetadataModelResponse, MetadataTensor, ResponseOutput
from .base import import_framework, log, model_path

onnxruntime = import_framework("onnxruntime", "onnx", "ONNX Runtime")
InvalidArgument = onnxruntime.capi.onnxruntime_pybind11_state.InvalidArgument

_DATATYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def _metadata_tensor(arg: Any) -> MetadataTensor | None:
    """A graph input or output as V2 metadata; None for what V2 cannot carry (sequences, maps, bfloat16)."""
    datatype = _DATATYPES.get(arg.type)
    if datatype is None:
        return None
    # a symbolic dimension ("batch") or an unknown one (None) takes any size
    return MetadataTensor(name=arg.name, datatype=Datatype(datatype), shape=[d if isinstance(d, int) else -1 for d in arg.shape])


class ONNXModel(MLModel):
    async def load(self) -> bool:
        path = model_path(self.settings, ("model.onnx",))
        options = onnxruntime.SessionOptions()
        # the worker's share of the cores: the gateway sets OMP_NUM_THREADS to worker_blas_threads
        options.intra_op_num_threads = int(os.environ.get("OMP_NUM_THREADS", "0"))
        self._session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self._inputs: dict[str, MetadataTensor] = {}
        for arg in self._session.get_inputs():
            tensor = _metadata_tensor(arg)
            if tensor is None:
                raise ValueError(f"{path}: input {arg.name!r} is a {arg.type}, which the V2 protocol cannot carry")
            self._inputs[arg.name] = tensor
        described = {arg.name: (arg.type, _metadata_tensor(arg)) for arg in self._session.get_outputs()}
        self._outputs = {name: tensor for name, (_, tensor) in described.items() if tensor is not None}
        others = [f"{name} ({kind})" for name, (kind, tensor) in described.items() if tensor is None]
        if others:
            log.warning(
                "model %s: outputs %s are not tensors and cannot be answered; a converter can usually make them tensors (skl2onnx: zipmap=False)",
                self.name,
                ", ".join(others),
            )
        log.info("model %s: ONNX graph from %s, inputs %s, outputs %s", self.name, path, list(self._inputs), list(self._outputs))
        self.ready = True
        return True

    async def metadata(self) -> MetadataModelResponse:
        described = await super().metadata()
        return described.model_copy(
            update={
                "platform": described.platform or "onnxruntime_onnx",  # Triton's name for it
                "inputs": described.inputs or list(self._inputs.values()),
                "outputs": described.outputs or list(self._outputs.values()),
            }
        )

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {}
        for request_input in payload.inputs:
            expected = self._inputs.get(request_input.name)
            if expected is None:
                raise BadRequest(f"unknown input {request_input.name!r}; the model takes {list(self._inputs)}")
            array = NumpyCodec.decode_input(request_input)
            feeds[request_input.name] = _as_strings(array, request_input.name) if expected.datatype is Datatype.BYTES else array
        missing = [name for name in self._inputs if name not in feeds]
        if missing:
            raise BadRequest(f"the model needs input(s) {missing}")
        names = [o.name for o in payload.outputs] if payload.outputs else list(self._outputs)
        unknown = [name for name in names if name not in self._outputs]
        if unknown:
            raise BadRequest(f"unknown output(s) {unknown}; the model answers {list(self._outputs)}")
        try:
            results = self._session.run(names, feeds)
        except InvalidArgument as exc:  # the inputs do not fit the graph (a fixed dimension, a datatype)
            raise BadRequest(f"ONNX Runtime refused the inputs: {exc}") from None
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[
                ResponseOutput(name=name, datatype=self._outputs[name].datatype, shape=list(result.shape), data=result) for name, result in zip(names, results)
            ],
        )


def _as_strings(array: np.ndarray, name: str) -> np.ndarray:
    """BYTES arrive as bytes; an ONNX string tensor takes str."""
    try:
        return np.array([item.decode() for item in array.ravel()], dtype=object).reshape(array.shape)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"input {name!r}: a string tensor needs UTF-8 ({exc.reason})") from None
