"""KServe's loggers (`kserve.logging`): `logger` ("kserve") and `trace_logger` ("kserve.trace").

`configure_logging()` gives both KServe's format on stderr; a dict, or a .json,
.yaml/.yml (needs PyYAML) or fileConfig path, configures logging instead.
KServe's configuration also sets up uvicorn's loggers; the gateway has no uvicorn.
"""

from __future__ import annotations

import json
import logging
import logging.config
from typing import Dict, Optional, Union

from .constants.constants import KSERVE_LOGLEVEL

KSERVE_LOGGER_NAME = "kserve"
KSERVE_TRACE_LOGGER_NAME = "kserve.trace"
KSERVE_LOGGER_FORMAT = "%(asctime)s.%(msecs)03d %(process)s %(name)s %(levelname)s [%(filename)s:%(funcName)s():%(lineno)s] %(message)s"
KSERVE_TRACE_LOGGER_FORMAT = "%(asctime)s.%(msecs)03d %(process)s %(name)s %(message)s"
KSERVE_LOGGER_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

KSERVE_LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "kserve": {"()": "logging.Formatter", "fmt": KSERVE_LOGGER_FORMAT, "datefmt": KSERVE_LOGGER_DATE_FORMAT},
        "kserve_trace": {"()": "logging.Formatter", "fmt": KSERVE_TRACE_LOGGER_FORMAT, "datefmt": KSERVE_LOGGER_DATE_FORMAT},
    },
    "handlers": {
        "kserve": {"formatter": "kserve", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
        "kserve_trace": {"formatter": "kserve_trace", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
    },
    "loggers": {
        "kserve": {"handlers": ["kserve"], "level": KSERVE_LOGLEVEL, "propagate": False},
        "kserve.trace": {"handlers": ["kserve_trace"], "level": KSERVE_LOGLEVEL, "propagate": False},
    },
}

logger = logging.getLogger(KSERVE_LOGGER_NAME)
trace_logger = logging.getLogger(KSERVE_TRACE_LOGGER_NAME)


def configure_logging(log_config: Optional[Union[Dict, str]] = None) -> None:
    """Configure KServe's loggers; call it before loading the model.

    None: KServe's default configuration, unless the "kserve" logger already has a handler."""
    if log_config is None:
        if not logger.hasHandlers():
            logging.config.dictConfig(KSERVE_LOG_CONFIG)
    elif isinstance(log_config, dict):
        logging.config.dictConfig(log_config)
    elif log_config.endswith(".json"):
        with open(log_config) as file:
            logging.config.dictConfig(json.load(file))
    elif log_config.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise ImportError(f"log config {log_config} is YAML, which needs PyYAML: pip install pyyaml") from None
        with open(log_config) as file:
            logging.config.dictConfig(yaml.safe_load(file))
    else:
        logging.config.fileConfig(log_config, disable_existing_loggers=False)
