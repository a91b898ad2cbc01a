# The kcm image: the kcm-hook command line on a Python base.
#
# Build it with `make image` (scripts/build-image.py): the script installs
# kcm-hook and its dependencies for the base image's own Python into
# site/ of the build context on the host, so this build copies files and runs
# nothing, and needs no network. BASE is any image with python3 (3.9 or later,
# glibc); without that script, there is no site/ to copy.
#
#   docker run --rm kcm --help
#   docker run --rm -v /etc/kcm:/etc/kcm kcm init     (the configuration must
#                                                      live on the host)
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}
COPY site /opt/kcm/site
ENV PYTHONPATH=/opt/kcm/site PYTHONDONTWRITEBYTECODE=1
ENTRYPOINT ["python3", "-m", "kcm_hook"]
CMD ["--help"]
