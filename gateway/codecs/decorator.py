"""`decode_args`: MLServer's "simplified interface", `predict` declared with typed arguments
(as `mlserver.codecs.decorator`).

    class Runtime(MLModel):
        @decode_args
        async def predict(self, questions: List[str], context: List[str]) -> np.ndarray:
            ...

Each argument is the request input of that name, decoded by the codec whose
TypeHint is its annotation (`np.ndarray`: NumpyCodec, `List[str]`:
StringCodec, `List[bytes]`: Base64Codec, `pd.DataFrame`: PandasCodec, which
takes every input no other argument names). The return value, or each element
of a returned tuple, is encoded by the codec of the return annotation, as
outputs `output-0`, `output-1`, ...
"""

from __future__ import annotations

import inspect
from functools import wraps
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Dict, List, Optional, Tuple, Union, cast, get_args, get_origin, get_type_hints

from ..types import InferenceRequest, InferenceResponse, ResponseOutput
from .base import InputCodec, RequestCodec, find_input_codec, find_request_codec
from .errors import CodecNotFound, InputsNotFound, OutputNotFound
from .utils import Codec

if TYPE_CHECKING:
    from ..model import MLModel

PredictFunc = Callable[["MLModel", InferenceRequest], Coroutine[Any, Any, InferenceResponse]]


def _as_list(a: Any) -> List[Any]:
    """A tuple (value or type) as its elements; None as nothing; anything else as one element."""
    if a is None:
        return []
    if isinstance(a, tuple):
        return list(a)
    if get_origin(a) is tuple:
        return list(get_args(a))
    return [a]


def _is_codec_type(codec: Any, kind: type) -> bool:
    return (isinstance(codec, type) and issubclass(codec, kind)) or isinstance(codec, kind)


def _unwrap_optional(hint: Any) -> Any:
    """Optional[X] (Union[X, None]) is X: a missing input is the argument's default."""
    if get_origin(hint) is Union:
        args = [arg for arg in get_args(hint) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


class SignatureCodec(RequestCodec):
    """Maps a predict signature's type hints to codecs, and requests to its arguments."""

    def __init__(self, predict: Callable):
        self._predict = predict
        self._input_codecs, self._output_codecs = self._get_codecs(predict)

    def _get_codecs(self, pred: Callable) -> Tuple[Dict[str, Codec], List[Codec]]:
        self._input_hints = {name: _unwrap_optional(hint) for name, hint in get_type_hints(pred).items()}
        self._output_hints = _as_list(self._input_hints.pop("return", None))
        input_codecs = {name: self._find_codec(name, hint, is_input=True) for name, hint in self._input_hints.items()}
        output_codecs = [self._find_codec(None, hint, is_input=False) for hint in self._output_hints]
        return input_codecs, output_codecs

    def _find_codec(self, name: Optional[str], type_hint: Any, is_input: bool = False) -> Codec:
        codec = find_input_codec(type_hint=type_hint) or find_request_codec(type_hint=type_hint)
        if codec is None:
            raise CodecNotFound(name=name, payload_type=str(type_hint), is_input=is_input)
        return codec

    def decode_request(self, request: InferenceRequest) -> Dict[str, Any]:  # type: ignore[override]
        """The keyword arguments of predict. Inputs no argument names go, as one request, to an
        argument typed with a request codec (a DataFrame); with none, they are an error."""
        inputs: Dict[str, Any] = {}
        extra_request_inputs = []
        for request_input in request.inputs:
            codec = self._input_codecs.get(request_input.name)
            if codec is None:
                extra_request_inputs.append(request_input)
                continue
            if not _is_codec_type(codec, InputCodec):
                raise CodecNotFound(name=request_input.name, is_input=True)
            inputs[request_input.name] = cast(Any, codec).decode_input(request_input)
        if extra_request_inputs:
            request_codec = self._get_request_codec()
            if request_codec is None:
                raise InputsNotFound(extra_request_inputs, self._input_codecs)
            name, codec = request_codec
            inputs[name] = codec.decode_request(InferenceRequest(inputs=extra_request_inputs))
        return inputs

    def _get_request_codec(self) -> Optional[Tuple[str, Any]]:
        for name, codec in self._input_codecs.items():
            if _is_codec_type(codec, RequestCodec):
                return name, codec
        return None

    def encode_response(  # type: ignore[override]
        self, model_name: str, payload: Any, model_version: Optional[str] = None
    ) -> InferenceResponse:
        outputs: List[ResponseOutput] = []
        for idx, value in enumerate(_as_list(payload)):
            outputs += self._encode_outputs(idx, value)
        return InferenceResponse(model_name=model_name, model_version=model_version, outputs=outputs)

    def _encode_outputs(self, idx: int, payload: Any) -> List[ResponseOutput]:
        if idx >= len(self._output_codecs) or not self._output_codecs[idx].can_encode(payload):
            raise OutputNotFound(idx, type(payload), self._output_hints)
        codec = self._output_codecs[idx]
        if _is_codec_type(codec, InputCodec):
            return [cast(Any, codec).encode_output(name=f"output-{idx}", payload=payload)]
        # a request codec: its outputs, without its model name
        return cast(Any, codec).encode_response(model_name="", payload=payload).outputs


def decode_args(predict: Callable) -> PredictFunc:
    """Decorate `predict(self, **typed_inputs) -> typed_outputs` into `predict(self, request) -> response`."""
    codec = SignatureCodec(predict)

    @wraps(predict)
    async def _f(self: "MLModel", request: InferenceRequest) -> InferenceResponse:
        inputs = codec.decode_request(request=request)
        outputs = predict(self, **inputs)
        if inspect.isawaitable(outputs):
            outputs = await outputs
        return codec.encode_response(model_name=self.name, payload=outputs, model_version=self.version)

    return _f
