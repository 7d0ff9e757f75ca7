# The baseline for bench_image.py: the same base and pip settings as the action's
# Dockerfile, holding only the three runtime dependencies and nothing of ours.
ARG PYTHON_IMAGE=python:3.12-slim
FROM ${PYTHON_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN pip install --no-cache-dir --no-compile requests pyyaml junit-xml
