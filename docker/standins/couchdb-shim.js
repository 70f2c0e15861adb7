// The couchdb:3 stand-in's entry point (docker/standins/couchdb.Dockerfile): pouchdb-server,
// configured the way the official CouchDB image is, plus the one endpoint mydrive's compose
// health check needs and pouchdb-server lacks (GET /_up).
//
//   COUCHDB_USER / COUCHDB_PASSWORD   the admin (as in the official image)
//   /opt/couchdb/etc/local.d/*.ini    [chttpd] port and bind_address (default 5984, 0.0.0.0)
//   /opt/couchdb/data                 databases, config.json and the log
"use strict";

const fs = require("fs");
const path = require("path");

const MODULES = "/opt/pouchdb/node_modules";
const DATA = "/opt/couchdb/data";
const LOCAL_D = "/opt/couchdb/etc/local.d";

function iniSettings(dir) {
  // The [chttpd] settings of every *.ini in dir, later files winning (CouchDB's order).
  const out = {};
  let files = [];
  try {
    files = fs.readdirSync(dir).filter((f) => f.endsWith(".ini")).sort();
  } catch (err) {
    return out;
  }
  for (const file of files) {
    let section = "";
    for (const raw of fs.readFileSync(path.join(dir, file), "utf8").split(/\r?\n/)) {
      const line = raw.trim();
      if (!line || line.startsWith(";") || line.startsWith("#")) continue;
      const header = line.match(/^\[(.+)\]$/);
      if (header) { section = header[1].trim(); continue; }
      const kv = line.match(/^([^=]+?)\s*=\s*(.*)$/);
      if (kv && section === "chttpd") out[kv[1]] = kv[2];
    }
  }
  return out;
}

const settings = iniSettings(LOCAL_D);
const port = settings.port || "5984";
const host = settings.bind_address || "0.0.0.0";
const user = process.env.COUCHDB_USER || "";
const password = process.env.COUCHDB_PASSWORD || "";

fs.mkdirSync(DATA, { recursive: true });
const configPath = path.join(DATA, "config.json");
// pouchdb-server hashes the admin password into this file on start; it holds a secret.
fs.writeFileSync(configPath, JSON.stringify({
  admins: user ? { [user]: password } : {},
  log: { file: path.join(DATA, "pouchdb.log"), level: "warning" },
}), { mode: 0o600 });

// GET /_up before anything else: wrap express so the app pouchdb-server builds gets the route
// first (CouchDB 3 answers {"status":"ok"} there; the compose health check greps for "ok").
const expressPath = require.resolve("express", { paths: [path.join(MODULES, "pouchdb-server")] });
const express = require(expressPath);
function expressWithUp() {
  const app = express();
  app.get("/_up", (req, res) => res.json({ status: "ok", seeds: {} }));
  return app;
}
Object.assign(expressWithUp, express);
require.cache[expressPath].exports = expressWithUp;

// PID 1 gets no default signal handling: end on SIGTERM/SIGINT (docker stop, compose down).
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));

process.chdir(DATA);
process.argv = [process.argv[0], "pouchdb-server", "-o", host, "-p", String(port),
  "-d", DATA + "/", "-c", configPath];
console.log(`couchdb stand-in: pouchdb-server on ${host}:${port}, data in ${DATA}`);
require(path.join(MODULES, "pouchdb-server", "lib", "index.js"));
