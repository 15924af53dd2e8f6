# syntax=docker/dockerfile:1
# The gateway, run as a non-root user. Used by compose.yaml; also works alone:
#   docker build -t comfy-gateway . && docker run -p 5782:5782 -e GATEWAY_COMFYUI_URL=http://HOST:8188 comfy-gateway
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir .

FROM ${PYTHON_IMAGE}
RUN useradd --create-home --uid 10001 --user-group gateway \
 && mkdir -p /app/data /app/presets \
 && chown gateway:gateway /app/data /app/presets
COPY --from=build /opt/venv /opt/venv
# The shipped presets seed the presets volume on first start; the volume keeps your changes.
COPY --chown=10001:10001 presets.yaml /app/presets/presets.yaml
COPY --chown=10001:10001 workflows /app/presets/workflows
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    GATEWAY_DATA_DIR=/app/data \
    GATEWAY_PRESETS=/app/presets/presets.yaml
USER 10001:10001
WORKDIR /app
EXPOSE 5782
CMD ["comfy-gateway", "serve"]
