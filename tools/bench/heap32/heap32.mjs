// heap32: MicroPython's wasm32 build (npm @micropython/micropython-webassembly-pyscript) driven line by line.
// tools/bench/board_heap.py writes one JSON request per line on stdin and reads the answers: lines starting
// with \x01 are answers, any other line is what MicroPython printed. Requests:
//   {"op": "put", "path": P, "b64": DATA}   write a file (folders made as needed)
//   {"op": "run", "code": SRC}              run SRC at the top level; answers the global _r (number or string)
//   {"op": "files", "root": R}             the files under R (as a board's flash is after a step): {path: base64}
//   {"op": "step", "count": N, "ms": T}     let the event loop run until N datagrams wait to be taken, at most T ms;
//                                           answers -1 when the agent waits for a collection (h32.pause)
// Between top-level calls this build collects garbage (it collects only there), so a run of "gc.collect()"
// followed by a run reading gc.mem_alloc() gives the heap in use.
import { createInterface } from "node:readline";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript/micropython.mjs";

const heapsize = Number(process.argv[2] || 4 * 1024 * 1024);
const say = (obj) => process.stdout.write("\x01" + JSON.stringify(obj) + "\n");
const mp = await loadMicroPython({
  heapsize,
  stdout: (line) => process.stdout.write(line.replace(/\x01/g, "") + "\n"),
  stderr: (line) => process.stdout.write(line.replace(/\x01/g, "") + "\n"),
});

let sent = 0;
let gcWanted = false;
mp.registerJsModule("h32js", {
  sent: () => { sent += 1; },
  taken: () => { sent = 0; },
  want_gc: () => { gcWanted = true; },
});

function mkdirs(path) {
  let at = "";
  for (const part of path.split("/").slice(1, -1)) {
    at += "/" + part;
    try { mp.FS.mkdir(at); } catch { /* exists */ }
  }
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 1));

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const req = JSON.parse(line);
  try {
    if (req.op === "put") {
      mkdirs(req.path);
      mp.FS.writeFile(req.path, Buffer.from(req.b64, "base64"));
      say({ ok: true });
    } else if (req.op === "run") {
      mp.runPython(req.code);
      const value = mp.globals.get("_r");
      say({ ok: true, value: typeof value === "number" || typeof value === "string" ? value : null });
    } else if (req.op === "files") {
      const out = {};
      const walk = (dir) => {
        for (const name of mp.FS.readdir(dir)) {
          if (name === "." || name === "..") continue;
          const path = dir + "/" + name;
          if (mp.FS.isDir(mp.FS.stat(path).mode)) walk(path);
          else out[path] = Buffer.from(mp.FS.readFile(path)).toString("base64");
        }
      };
      walk(req.root);
      say({ ok: true, value: JSON.stringify(out) });
    } else if (req.op === "step") {
      const until = Date.now() + req.ms;
      while (sent < req.count && !gcWanted && Date.now() < until) await tick();
      say({ ok: true, value: gcWanted ? -1 : sent });
      gcWanted = false;
    } else {
      say({ ok: false, error: "unknown op " + req.op });
    }
  } catch (err) {
    say({ ok: false, error: String(err && err.message ? err.message : err) });
  }
}
