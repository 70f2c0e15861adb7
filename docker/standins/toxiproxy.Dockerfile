# LOCAL STAND-IN for the official ghcr.io/shopify/toxiproxy:2.12.0, built by
# scripts/containers.sh only when that image can't be pulled. The server is the one built from
# Toxiproxy's Go module (go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0, by
# scripts/install-toxiproxy.sh), laid out as in the official image: /toxiproxy, API on 8474.
FROM mydrive-debian:bookworm
LABEL org.mydrive.standin="ghcr.io/shopify/toxiproxy:2.12.0 = server built from its Go module (docker/standins/toxiproxy.Dockerfile)"
COPY toxiproxy /toxiproxy
EXPOSE 8474
ENTRYPOINT ["/toxiproxy"]
CMD ["-host=0.0.0.0"]
