// baton against llama.cpp (node-llama-cpp's prebuilt CPU build) with C concurrent
// requests: `baton bench batch` and bench/llama_cpp_batched.mjs, interleaved run by run
// and stream count by stream count (which goes first alternates), each process doing
// its own warm-up round; medians of --runs each. Then baton's actor overhead for a
// batch-1 decode step. Prints a markdown table for bench/RESULTS.md; progress on stderr.
//   node bench/compare_batched.mjs [--runs 3] [-t 2] [-p 32] [-n 32] [--streams 1,4,16,64] MODEL
// Needs build/bin/baton and node-llama-cpp in ~/.cache/baton/peer (bench/setup_peer.sh).
// Measure on a quiet machine: the load average is printed before and after.
import { execFileSync } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const baton = path.join(here, "..", "build", "bin", "baton");
const args = process.argv.slice(2);
const take = (flag, dflt) => {
  const i = args.indexOf(flag);
  if (i < 0) return dflt;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
};
const runs = Number(take("--runs", 3));
const threads = Number(take("-t", 2));
const nPrompt = Number(take("-p", 32));
const nGen = Number(take("-n", 32));
const streams = String(take("--streams", "1,4,16,64")).split(",").map(Number);
const model = args[0];
if (!model) {
  console.error("usage: node bench/compare_batched.mjs [--runs 3] [-t 2] [-p 32] [-n 32] " +
    "[--streams 1,4,16,64] MODEL");
  process.exit(2);
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const load = () => os.loadavg().map((x) => x.toFixed(2)).join(" ");
const common = ["-p", String(nPrompt), "-n", String(nGen), "-t", String(threads), "-r", "1"];

function runBaton(c) {
  const out = JSON.parse(execFileSync(baton, ["bench", "batch", "-m", model, "--streams",
    String(c), ...common, "--no-overhead", "--json"], { maxBuffer: 1 << 24 }).toString());
  return out.batch[0];
}
function runLlama(c) {
  const out = JSON.parse(execFileSync("node", [path.join(here, "llama_cpp_batched.mjs"), model,
    "--streams", String(c), ...common], { maxBuffer: 1 << 24 }).toString().trim().split("\n").pop());
  return { version: out.llama_cpp, ...out.batch[0] };
}

const loadBefore = load();
process.stderr.write(`load average before: ${loadBefore}\n`);
const res = new Map(streams.map((c) => [c, { b: [], l: [] }]));
let version = null;
for (let r = 0; r < runs; ++r) {
  for (const [k, c] of streams.entries()) {
    const batonFirst = (r + k) % 2 === 0;
    const order = batonFirst ? ["b", "l"] : ["l", "b"];
    for (const who of order) {
      const x = who === "b" ? runBaton(c) : runLlama(c);
      if (who === "l") version = x.version;
      res.get(c)[who].push({
        decode: x.decode_tokens_per_s[0], output: x.output_tokens_per_s[0], ttft: x.ttft_mean_s[0],
      });
    }
    const b = res.get(c).b.at(-1);
    const l = res.get(c).l.at(-1);
    process.stderr.write(`run ${r + 1}/${runs} streams ${c}: baton decode ${b.decode.toFixed(1)} ` +
      `output ${b.output.toFixed(1)} | llama.cpp decode ${l.decode.toFixed(1)} ` +
      `output ${l.output.toFixed(1)} (load ${load()})\n`);
  }
}
const ovh = JSON.parse(execFileSync(baton, ["bench", "batch", "-m", model, ...common.slice(0, -2),
  "-r", String(runs), "--no-batch", "--json"], { maxBuffer: 1 << 24 }).toString()).overhead;
const loadAfter = load();

const med = (xs, key) => median(xs.map((x) => x[key]));
console.log("| streams | baton decode t/s | llama.cpp decode t/s | ratio | baton output t/s | " +
  "llama.cpp output t/s | ratio | baton TTFT ms | llama.cpp TTFT ms |");
console.log("|---|---|---|---|---|---|---|---|---|");
for (const c of streams) {
  const { b, l } = res.get(c);
  const bd = med(b, "decode"), ld = med(l, "decode"), bo = med(b, "output"), lo = med(l, "output");
  console.log(`| ${c} | ${bd.toFixed(1)} | ${ld.toFixed(1)} | ${(bd / ld).toFixed(2)} | ` +
    `${bo.toFixed(1)} | ${lo.toFixed(1)} | ${(bo / lo).toFixed(2)} | ` +
    `${(med(b, "ttft") * 1e3).toFixed(0)} | ${(med(l, "ttft") * 1e3).toFixed(0)} |`);
}
const e = ovh.engine_ms_per_token_median;
const s = ovh.server_ms_per_token_median;
console.log(`\nActor overhead, batch-1 decode step: engine ${e.toFixed(2)} ms, local_server ` +
  `${s.toFixed(2)} ms, difference ${(s - e).toFixed(2)} ms = ${(100 * (s - e) / s).toFixed(1)}% ` +
  `of the step` + (ovh.shard_idle_share != null
    ? `; shard idle between steps (router round trip) ${(100 * ovh.shard_idle_share).toFixed(1)}%.`
    : "."));
console.log(`\n${path.basename(model)}, -p ${nPrompt} -n ${nGen}, ${threads} threads; decode = ` +
  `C×(n−1) tokens from the moment every request has its first token to the last one's end; ` +
  `output = C×n tokens from submit to the end; TTFT = mean time to first token. Medians of ` +
  `${runs} interleaved runs. llama.cpp: node-llama-cpp 3.21.1 bundling llama.cpp ` +
  `${JSON.stringify(version)}, one context with \`sequences: C\`. Load average before ` +
  `${loadBefore}, after ${loadAfter}.`);
