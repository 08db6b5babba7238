# The inference gateway as a container image (docs/DEPLOY.md).
#
#   docker build -t inference-gateway:0.1.0 .
#   docker build --build-arg EXTRAS=sklearn,onnx -t inference-gateway:0.1.0-sklearn-onnx .
#   docker run --rm -p 8080:8080 -p 8081:8081 -p 8082:8082 -v "$PWD/config:/models:ro" inference-gateway:0.1.0
#
# It serves the models under /models; KServe mounts them at /mnt/models, so its
# ClusterServingRuntime (deploy/kserve/) passes `start --config /mnt/models` as args.

ARG PYTHON_IMAGE=python:3.11-slim-trixie

# --- build: the README's install, into a virtualenv that the runtime stage copies -----------------
FROM ${PYTHON_IMAGE} AS build

# optional extras, comma-separated: sklearn, xgboost, lightgbm, onnx, pandas
ARG EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . .
# `pip install .` of the checkout, as the README installs it (not editable: the image keeps no checkout)
RUN python -m venv /opt/gateway \
    && /opt/gateway/bin/pip install ".${EXTRAS:+[$EXTRAS]}"

# --- runtime: slim base, the virtualenv, a non-root user -------------------------------------------
FROM ${PYTHON_IMAGE}

RUN groupadd --gid 1000 gateway \
    && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin gateway \
    && mkdir /models

COPY --from=build /opt/gateway /opt/gateway

# PYTHONDONTWRITEBYTECODE: model folders are mounted read-only; nothing to cache there
ENV PATH=/opt/gateway/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# REST, gRPC, Prometheus /metrics
EXPOSE 8080 8081 8082

# numeric, so that Kubernetes' runAsNonRoot can check it
USER 1000:1000
WORKDIR /models

# Ready: every model loaded. `gateway probe` reads the settings `gateway start` reads (settings.json and
# the GATEWAY_* variables: the port wherever it is set, TLS when it is on) and exits 0 on a 200.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["gateway", "probe", "--config", "/models"]

# exec form: the gateway is PID 1 and receives SIGTERM itself, then drains and stops its workers
ENTRYPOINT ["gateway"]
CMD ["start", "--config", "/models"]
