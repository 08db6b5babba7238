"""Where a transformer sends its requests (`kserve.PredictorConfig`)."""

from .constants.constants import PredictorProtocol


class PredictorConfig:
    def __init__(
        self,
        predictor_host: str,
        predictor_protocol: str = PredictorProtocol.REST_V1.value,
        predictor_use_ssl: bool = False,
        predictor_request_timeout_seconds: int = 600,
        predictor_request_retries: int = 0,
        predictor_health_check: bool = False,
    ):
        """predictor_host: host[:port] of the predictor; predictor_protocol: "v1", "v2" or "grpc-v2";
        predictor_use_ssl: https / TLS; predictor_request_timeout_seconds, predictor_request_retries:
        per request; predictor_health_check: the transformer is ready only while its predictor is."""
        self._predictor_host = predictor_host
        self._predictor_protocol = predictor_protocol
        self._predictor_use_ssl = predictor_use_ssl
        self._predictor_request_timeout_seconds = predictor_request_timeout_seconds
        self._predictor_request_retries = predictor_request_retries
        self._predictor_health_check = predictor_health_check

    @property
    def predictor_host(self) -> str:
        return self._predictor_host

    @property
    def predictor_protocol(self) -> str:
        return self._predictor_protocol

    @property
    def predictor_use_ssl(self) -> bool:
        return self._predictor_use_ssl

    @property
    def predictor_request_timeout_seconds(self) -> int:
        return self._predictor_request_timeout_seconds

    @property
    def predictor_request_retries(self) -> int:
        return self._predictor_request_retries

    @property
    def predictor_health_check(self) -> bool:
        return self._predictor_health_check

    @property
    def predictor_base_url(self) -> str:
        """http(s)://predictor_host"""
        return f"{'https' if self._predictor_use_ssl else 'http'}://{self._predictor_host}"

    # KServe's older names
    protocol = predictor_protocol
    timeout = predictor_request_timeout_seconds
    retries = predictor_request_retries
    use_ssl = predictor_use_ssl
