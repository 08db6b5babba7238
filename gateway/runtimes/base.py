"""What the built-in runtimes share: importing their framework, finding the model
file, and answering with outputs named after the model's methods, as MLServer's
scikit-learn, XGBoost and LightGBM runtimes answer (through the same codecs)."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Sequence

from ..codecs import NumpyCodec, NumpyRequestCodec
from ..errors import BadRequest
from ..model import MLModel
from ..settings import ModelSettings
from ..types import InferenceRequest, InferenceResponse, RequestOutput, ResponseOutput

log = logging.getLogger("gateway.runtimes")

# parameters.extra key naming the output (a method of the model) answered when a request names none (MLServer's)
PREDICT_FN = "predict_fn"


class MissingExtra(ImportError):
    """A built-in runtime's framework cannot be imported; the message names the extra that installs it."""


def import_framework(module: str, extra: str, package: str) -> ModuleType:
    """Import a runtime's framework, or fail the model's load saying what to install.

    OSError too: a framework whose native library cannot load (LightGBM without
    libgomp) fails with one."""
    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as exc:
        raise MissingExtra(
            f"{package} is needed by this runtime and cannot be imported ({type(exc).__name__}: {exc}); "
            f'install it with: pip install "inference-gateway[{extra}]"'
        ) from exc


def model_path(settings: ModelSettings, wellknown: Sequence[str]) -> Path:
    """The model file, found as MLServer finds it: `parameters.uri` names the file, or a
    folder holding one of the well-known names (tried in order); without a uri, the
    model's own folder is that folder."""
    uri = settings.parameters.uri
    if uri is None:
        if settings.folder is None:
            raise ValueError("parameters.uri is not set")
        path = settings.folder
    elif uri.startswith("file://"):
        path = Path(uri.removeprefix("file://"))
    elif "://" in uri:
        raise ValueError(f"parameters.uri {uri!r}: only local files are supported; put the model file in the model's folder")
    else:
        path = Path(str(settings.uri))  # resolved against the model's folder (set: uri is)
    if path.is_file():
        return path
    if path.is_dir():
        for name in wellknown:
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"no model file in {path}: expected one of {', '.join(wellknown)}, or parameters.uri naming the file")
    raise FileNotFoundError(f"parameters.uri: {path} does not exist")


class EstimatorModel(MLModel):
    """A loaded model whose outputs are its methods, each run on the whole input.

    A request's `outputs` pick the methods (among `output_methods`); a request that
    names none gets `parameters.extra.predict_fn`, by default `predict`. The input is
    the request decoded by its content type: one tensor as a numpy array, or with
    content type `pd` a DataFrame of one column per tensor."""

    model_files: ClassVar[tuple[str, ...]] = ()  # well-known file names in a folder uri
    output_methods: ClassVar[tuple[str, ...]] = ("predict",)
    # what the model raises when it checks the rows it is given (feature count, NaN, strings): the request's fault
    input_errors: ClassVar[tuple[type[Exception], ...]] = (ValueError,)

    def load_model(self, path: Path) -> Any:
        raise NotImplementedError

    async def load(self) -> bool:
        path = model_path(self.settings, self.model_files)
        self._model = self.load_model(path)
        self._default_output = self.settings.parameters.extra.get(PREDICT_FN, "predict")
        if not isinstance(self._default_output, str) or not callable(getattr(self._model, self._default_output, None)):
            raise ValueError(f"parameters.extra.{PREDICT_FN} is {self._default_output!r}: {type(self._model).__name__} has no such method")
        log.info("model %s: %s from %s", self.name, type(self._model).__name__, path)
        self.ready = True
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        requested = self._requested_outputs(payload)
        features = self.decode_request(payload, default_codec=NumpyRequestCodec)
        outputs: list[ResponseOutput] = []
        for request_output in requested:
            method = request_output.name
            try:
                result = getattr(self._model, method)(features)
            except self.input_errors as exc:
                raise BadRequest(f"{type(self._model).__name__}.{method} refused the input: {exc}") from None
            outputs += self.encode_result(result, request_output, len(requested))
        return InferenceResponse(model_name=self.name, model_version=self.version, outputs=outputs)

    def encode_result(self, result: Any, request_output: RequestOutput, outputs_requested: int) -> list[ResponseOutput]:
        """The outputs of one method's result: by the output's content type, else as a numpy array
        (MLServer's NumpyCodec: a 1-D result is one column, [n, 1])."""
        # a sparse matrix (e.g. a OneHotEncoder's transform) has no V2 form but the dense one
        if hasattr(result, "toarray"):
            result = result.toarray()
        return [self.encode(result, request_output, default_codec=NumpyCodec)]

    def _requested_outputs(self, payload: InferenceRequest) -> list[RequestOutput]:
        if not payload.outputs:
            return [RequestOutput(name=self._default_output)]
        allowed = list(dict.fromkeys((*self.output_methods, self._default_output)))
        for request_output in payload.outputs:
            method = request_output.name
            if method not in allowed:
                quoted = [repr(name) for name in allowed]
                listed = " and ".join([", ".join(quoted[:-1]), quoted[-1]]) if len(quoted) > 1 else quoted[0]
                raise BadRequest(f"{type(self).__name__} only supports {listed} as outputs ({method!r} was requested)")
            if not callable(getattr(self._model, method, None)):
                raise BadRequest(f"{type(self._model).__name__} models do not support {method!r}")
        return payload.outputs
