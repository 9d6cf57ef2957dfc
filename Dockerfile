# Secretary in a container. compose.yaml builds three images from this file:
#   secretary:gpu     CUDA 12 with cuDNN (what CTranslate2 loads for GPU Whisper),
#                     [xtts,liveportrait]
#   secretary:canary  the same base, [canary] (NeMo)
#   secretary:cpu     python:3.11-slim-bookworm, no extras: the embedded CPU models
# Build one by hand:  docker build --build-arg EXTRAS='[xtts,liveportrait]' -t secretary:gpu .
ARG BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
FROM ${BASE_IMAGE}
ARG EXTRAS="[xtts,liveportrait]"

# The CUDA image has no Python; the python image has one, and apt-get is a no-op there.
RUN command -v python3 >/dev/null && python3 -m venv --help >/dev/null 2>&1 \
 || (apt-get update \
     && apt-get install -y --no-install-recommends python3 python3-venv \
     && rm -rf /var/lib/apt/lists/*)

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir ".${EXTRAS}"

# Listening on every interface: give the services a key (docker run -e
# SECRETARY_API_KEY=<long random key>, or SECRETARY_API_KEY in compose's .env); clients
# send "Authorization: Bearer <key>", the browser UI asks for it once. Host names clients
# use besides localhost go in SECRETARY_ALLOWED_HOSTS (with the compose service names).
ENV PATH=/opt/venv/bin:$PATH \
    SECRETARY_HOST=0.0.0.0 \
    SECRETARY_ALLOWED_HOSTS=stt,tts,avatar,ui \
    SECRETARY_CACHE_DIR=/cache \
    SECRETARY_DATA_DIR=/data \
    HF_HOME=/cache/hf
# /data holds the user's calendar, notes and memory: keep it in a volume of its own.
VOLUME /cache /data
ENTRYPOINT ["secretary"]
CMD ["serve"]
