# LOCAL STAND-IN for the official couchdb:3, built by scripts/containers.sh only when that
# image can't be pulled (CouchDB itself is in no registry our machines reach). It is
# pouchdb-server, the CouchDB-protocol server mydrive's local networks run, behind a shim
# (couchdb-shim.js) that behaves like the image where mydrive relies on it: admin from
# COUCHDB_USER/COUCHDB_PASSWORD, data in /opt/couchdb/data, port and bind address from
# /opt/couchdb/etc/local.d/*.ini ([chttpd] port, default 5984, on 0.0.0.0), GET /_up.
# Build context (made by scripts/containers.sh): node_modules/ from .tools/ and the shim.
FROM mydrive-debian:bookworm
LABEL org.mydrive.standin="couchdb:3 = pouchdb-server 4.2 behind a CouchDB shim (docker/standins/couchdb.Dockerfile)"
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends nodejs >/dev/null \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /opt/couchdb/data /opt/couchdb/etc/local.d
COPY node_modules /opt/pouchdb/node_modules
COPY couchdb-shim.js /opt/pouchdb/couchdb-shim.js
VOLUME /opt/couchdb/data
EXPOSE 5984
ENTRYPOINT ["node", "--unhandled-rejections=warn", "/opt/pouchdb/couchdb-shim.js"]
