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

# Listening on every interface: give the services a key (docker run -e
# SECRETARY_API_KEY=<long random key>, or SECRETARY_API_KEY in compose's .env); clients
# send "Authorization: Bearer <key>", the browser UI asks for it once. Host names clients
# use besides localhost go in SECRETARY_ALLOWED_HOSTS (with the compose service names).
ENV PATH=/opt/venv/bin:$PATH \
    SECRETARY_HOST=0.0.0.0 \
    SECRETARY_ALLOWED_HOSTS=stt,tts,avatar,ui \
    SECRETARY_CACHE_DIR=/cache \
    HF_HOME=/cache/hf
VOLUME /cache
ENTRYPOINT ["secretary"]
CMD ["serve"]
