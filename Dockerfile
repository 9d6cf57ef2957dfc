# Secretary on a GPU box: the same package, with the production engines' extras.
# Build:  docker build -t secretary .
# Run:    docker compose up     (see compose.yaml: one container per service)
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir '.[xtts,liveportrait]'

ENV PATH=/opt/venv/bin:$PATH \
    SECRETARY_HOST=0.0.0.0 \
    SECRETARY_CACHE_DIR=/cache \
    HF_HOME=/cache/hf
VOLUME /cache
ENTRYPOINT ["secretary"]
CMD ["serve"]
