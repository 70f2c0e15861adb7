# LOCAL STAND-IN for the official nginx:1.28, built by scripts/containers.sh only when that
# image can't be pulled. Debian 12's nginx-light (1.22: http2, grpc and ssl, which the
# peer's config uses); mydrive's compose files run `nginx -p /peer/nginx -c …` themselves.
FROM mydrive-debian:bookworm
LABEL org.mydrive.standin="nginx:1.28 = Debian nginx-light 1.22 (docker/standins/nginx.Dockerfile)"
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends nginx-light >/dev/null \
 && rm -rf /var/lib/apt/lists/*
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
