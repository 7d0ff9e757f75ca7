# The image GitHub Actions builds for this action (`runs.image: Dockerfile`), and the
# `ectf-action` command-line client for anyone who prefers a container.
#
# The runner builds with no build arguments, so this default is what users get. It is the
# official python:3.12-slim multi-arch index (Python 3.12.14 on Debian trixie), pinned by
# digest so a moved tag cannot change the image; the digest is the one Docker resolves for
# docker.io/library/python:3.12-slim at that release, as recorded in public build logs.
# Re-resolve when bumping: `docker buildx imagetools inspect python:3.12-slim`.
ARG PYTHON_IMAGE=python:3.12-slim@sha256:78387bc3881b8273120a12ebe6c1ab22b018ccc2c9adf565ae1ac9b536e184ea
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="ectf-action" \
      org.opencontainers.image.description="GitHub Action and command-line client for the eCTF testing server" \
      org.opencontainers.image.source="https://github.com/ectf-action/ectf-action" \
      org.opencontainers.image.version="1.0.0" \
      org.opencontainers.image.licenses="MIT"

# Unbuffered output keeps workflow commands in order with the runner's view of stderr;
# no bytecode is written at run time into a container that is thrown away.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

# .dockerignore lets only pyproject.toml, README.md, requirements.lock and src/ into the
# context: one small layer of sources, then one layer with the package and its runtime
# dependencies at the versions requirements.lock pins.
# The runner builds this image in every job that uses the action, so build time counts
# as much as size: a stage that builds a wheel first saved only the sources' few hundred
# kilobytes and made the build seconds slower, and compiling bytecode at install time
# costs more in each build than it saves in the one or two starts that follow.
COPY . /tmp/ectf-action/
RUN pip install --no-cache-dir --no-compile \
      --constraint /tmp/ectf-action/requirements.lock /tmp/ectf-action \
 && rm -rf /tmp/ectf-action

# The runner runs the image as root with the workspace mounted at /github/workspace; the
# post step replaces this entrypoint with `ectf-action-post` (action.yml).
ENTRYPOINT ["ectf-action", "run"]
