# LOCAL STAND-IN for the official python:3.11-slim, built by scripts/containers.sh only when
# that image can't be pulled (no registry reachable). Debian 12's python3 (3.11) in a
# virtualenv at /usr/local, so `python` and `pip` are on PATH as in the official image and
# sys.prefix is /usr/local (mydrive finds its nginx template under sys.prefix).
FROM mydrive-debian:bookworm
LABEL org.mydrive.standin="python:3.11-slim = Debian python3 in a virtualenv at /usr/local (docker/standins/python.Dockerfile)"
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends python3 python3-venv passwd >/dev/null \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /usr/local \
 && rm -f /usr/local/pyvenv.cfg.bak
# pip bundles its own CA list; this machine's registries may need the system's (which holds
# the machine's extra CA certificates, added to mydrive-debian:bookworm).
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    LANG=C.UTF-8
CMD ["python3"]
