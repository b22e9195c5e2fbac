# The Kubernaut services image: `kubernaut gateway` or `kubernaut context-api` (deploy/kubernetes/).
# Multi-stage: wheels are built with the toolchain in the first stage; the runtime stage holds only the
# installed virtual environment, runs as an unprivileged user and works with a read-only root filesystem.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/kubernaut
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/kubernaut/bin/pip install .

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/kubernaut/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 kubernaut \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin kubernaut
COPY --from=build /opt/kubernaut /opt/kubernaut
USER 10001:10001
EXPOSE 8080 8091
ENTRYPOINT ["kubernaut"]
CMD ["--help"]
