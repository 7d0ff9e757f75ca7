# The baseline for bench_image.py: the same base and pip settings as the action's
# Dockerfile, holding only the three runtime dependencies and nothing of ours. The
# script puts the repository's requirements.lock in the build context as
# constraints.txt (empty when there is none), so both images get the same versions.
ARG PYTHON_IMAGE=python:3.12-slim
FROM ${PYTHON_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

COPY constraints.txt /tmp/constraints.txt
RUN pip install --no-cache-dir --no-compile --constraint /tmp/constraints.txt \
      requests pyyaml junit-xml \
 && rm /tmp/constraints.txt
