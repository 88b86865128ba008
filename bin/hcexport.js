#!/usr/bin/env node
// The `hcexport` command's launcher. Plain ES2018 with no static import, so that any Node that can
// load an ES module at all gets this far and prints one line instead of a stack trace: hcexport
// itself needs node:sqlite, type stripping and the Google SDKs' current majors (Node >= 22.18).
"use strict";

var NEED_MAJOR = 22;
var NEED_MINOR = 18;
var found = process.versions.node;
var parts = found.split(".");
var major = Number(parts[0]);
var minor = Number(parts[1]);

if (major < NEED_MAJOR || (major === NEED_MAJOR && minor < NEED_MINOR)) {
  process.stderr.write(
    "hcexport: needs Node.js >= " +
      NEED_MAJOR +
      "." +
      NEED_MINOR +
      " (24 LTS recommended), found " +
      found +
      " at " +
      process.execPath +
      " — install Node 24 from https://nodejs.org/en/download (or `nvm install 24`), then reinstall hcexport with it\n",
  );
  process.exitCode = 2;
} else {
  import("node:module")
    .then(function (m) {
      // Cache V8's compiled code between runs (os.tmpdir()/node-compile-cache): start-up is most of a
      // `--version`. NODE_DISABLE_COMPILE_CACHE=1 turns it off.
      if (typeof m.enableCompileCache === "function") m.enableCompileCache();
      // yargs' help layout imports `string-width` and `wrap-ansi`, whose load and first calls cost
      // more than the rest of `--help`; dist/cli/fast-*.js give the same answers cheaply (see there).
      if (typeof m.registerHooks === "function") {
        var fast = {
          "string-width": new URL("../dist/cli/fast-string-width.js", import.meta.url).href,
          "wrap-ansi": new URL("../dist/cli/fast-wrap-ansi.js", import.meta.url).href,
        };
        var ours = [fast["string-width"], fast["wrap-ansi"]];
        m.registerHooks({
          resolve: function (specifier, context, next) {
            if (Object.prototype.hasOwnProperty.call(fast, specifier) && ours.indexOf(context.parentURL) < 0)
              return { url: fast[specifier], shortCircuit: true };
            return next(specifier, context);
          },
        });
      }
      return import("../dist/cli/main.js");
    })
    .catch(function (err) {
      process.stderr.write("hcexport: could not start: " + (err && err.stack ? err.stack : String(err)) + "\n");
      process.exitCode = 1;
    });
}
