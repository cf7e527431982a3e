# The modelrollout operator image.
#   docker build -t modelrollout-operator:0.1.0 .
#   docker run --rm modelrollout-operator:0.1.0 --help
# In a cluster it runs under the chart's ServiceAccount (in-cluster config) as uid 10001 with a read-only
# root filesystem; see charts/modelrollout.

FROM python:3.11.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Only what the package build needs (pyproject names README.md as the long description).
COPY pyproject.toml README.md ./
COPY operator ./operator
# A regular (non-editable) install of the runtime dependencies only; the dev extras stay out.
RUN pip install --upgrade pip && pip install . && pip check

FROM python:3.11.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A fixed non-root uid/gid the chart's securityContext matches (runAsNonRoot needs a numeric USER).
RUN groupadd --gid 10001 modelrollout \
 && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin modelrollout
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /tmp
# Operator metrics and Kopf's health endpoint.
EXPOSE 8000 8080
ENTRYPOINT ["modelrollout-operator"]
CMD ["--all-namespaces"]
