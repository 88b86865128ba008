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

/**
 * $XDG_CACHE_HOME/hcexport/compile-cache (else ~/.cache/…), made mode 0700 if missing, or
 * undefined — no cache at all — unless it is a real directory (not a symlink) owned by this user
 * that no one else can write to.
 */
function ownCacheDir() {
  // Node has already turned the cache on (NODE_COMPILE_CACHE), or been told not to.
  if (process.env.NODE_DISABLE_COMPILE_CACHE || process.env.NODE_COMPILE_CACHE) return undefined;
  var fs = process.getBuiltinModule("node:fs");
  var os = process.getBuiltinModule("node:os");
  var path = process.getBuiltinModule("node:path");
  try {
    var base = process.env.XDG_CACHE_HOME;
    if (!base || !path.isAbsolute(base)) {
      var home = os.homedir();
      if (!path.isAbsolute(home)) return undefined; // never a relative directory (below the cwd)
      base = path.join(home, ".cache");
    }
    var dir = path.join(base, "hcexport", "compile-cache");
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    var st = fs.lstatSync(dir);
    // Owner and mode bits mean nothing on Windows (no getuid): there the directory is the user's profile.
    var posix = typeof process.getuid === "function";
    var mine = !posix || (st.uid === process.getuid() && (st.mode & 0o022) === 0);
    return st.isDirectory() && mine ? dir : undefined;
  } catch (_e) {
    return undefined; // no home, read-only home: start without the cache
  }
}

/**
 * The commands that run long and start threads (stage threads, libuv's pool, V8's helpers) run
 * with MALLOC_ARENA_MAX=1. glibc gives each thread that allocates its own malloc arena, and their
 * partly used pages are most of what a thread adds to the peak RSS: `dicomweb pull` of 10,000 ×
 * 150 KB with a stage thread peaked at 151–158 MiB with the default arenas and 132–148 with one
 * (the 150 MiB target), the mirror at 151–154 against 138–140, in no more time (README). glibc
 * reads it only as a process starts, so the launcher starts Node again in the same process:
 * execve(2), so the pid, the terminal, stdio, signals and the exit status stay the CLI's, and
 * nothing waits on a child. One restart (~35 ms) only for these commands, never for `--version`
 * or `--help`; not when MALLOC_ARENA_MAX is set (the user's own value, or this restart's; set it
 * empty to keep glibc's default); not off Linux or without process.execve (Node >= 22.15). Other C
 * libraries (musl) ignore the variable.
 */
var ONE_ARENA_COMMANDS = ["run", "mirror", "dicomweb", "demo", "emulator"];
function restartWithOneArena() {
  if (process.platform !== "linux" || typeof process.execve !== "function") return;
  if (process.env.MALLOC_ARENA_MAX !== undefined) return;
  var args = process.argv.slice(2);
  var quick = args.some(function (a) {
    return a === "--version" || a === "--help" || a === "-h";
  });
  var long = args.some(function (a) {
    return ONE_ARENA_COMMANDS.indexOf(a) >= 0;
  });
  if (quick || !long) return;
  var env = Object.assign({}, process.env, { MALLOC_ARENA_MAX: "1" });
  try {
    process.execve(process.execPath, [process.execPath].concat(process.execArgv, process.argv.slice(1)), env);
  } catch (_e) {
    // execve refused (a seccomp filter, E2BIG): go on in this process, with glibc's default arenas.
  }
}

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
  restartWithOneArena();
  import("node:module")
    .then(function (m) {
      // Cache V8's compiled code between runs: start-up is most of a `--version`. In this user's own
      // cache directory, never Node's default (os.tmpdir()/node-compile-cache): on a shared machine
      // whoever creates that first owns it, and a planted entry would run as code in every later
      // run. NODE_DISABLE_COMPILE_CACHE=1 turns it off; NODE_COMPILE_CACHE=DIR (set before Node
      // starts) wins over this.
      if (typeof m.enableCompileCache === "function") {
        var dir = ownCacheDir();
        if (dir !== undefined) m.enableCompileCache(dir);
      }
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
