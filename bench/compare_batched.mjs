// baton against llama.cpp with C concurrent requests: `baton bench batch` and the peer,
// interleaved run by run and stream count by stream count (which goes first alternates),
// each process doing its own warm-up round; medians of --runs each. Then baton's actor
// overhead for a batch-1 decode step. Prints a markdown table for bench/RESULTS.md;
// progress on stderr. The peer is the native llama.cpp build in the shared folder (its
// llama-batched-bench) when it is there and runs the model on this CPU, else node-llama-cpp's
// prebuilt CPU build (bench/llama_cpp_batched.mjs); --peer forces one (see
// bench/llama_cpp_peer.mjs for both, and for how llama-batched-bench's numbers map).
//   node bench/compare_batched.mjs [--runs 3] [-t 2] [-p 32] [-n 32] [--streams 1,4,16,64]
//        [--peer native|node] MODEL
// Needs build/bin/baton, and for the node peer node-llama-cpp in ~/.cache/baton/peer
// (bench/setup_peer.sh).
// Measure on a quiet machine: the load average is printed before and after.
import { execFileSync } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { choosePeer, nativeBatched, peerNote, takePeerFlag } from "./llama_cpp_peer.mjs";

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
const want = takePeerFlag(args);
const model = args[0];
if (!model || !(nGen >= 2)) {
  console.error("usage: node bench/compare_batched.mjs [--runs 3] [-t 2] [-p 32] [-n 32 (>= 2)] " +
    "[--streams 1,4,16,64] [--peer native|node] MODEL");
  process.exit(2);
}
const peer = choosePeer(want, "llama-batched-bench", model, threads);
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
  if (peer.kind === "native") {
    return nativeBatched(peer, model, { streams: c, threads, nPrompt, nGen });
  }
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
      // bound: the native peer's TTFT is only an upper bound (C × p above its -b)
      res.get(c)[who].push({
        decode: x.decode_tokens_per_s[0], output: x.output_tokens_per_s[0], ttft: x.ttft_mean_s[0],
        bound: Boolean(x.ttft_upper_bound),
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
const ttftBound = streams.some((c) => res.get(c).l.some((x) => x.bound));
console.log("| streams | baton decode t/s | llama.cpp decode t/s | ratio | baton output t/s | " +
  "llama.cpp output t/s | ratio | baton TTFT ms | llama.cpp TTFT ms |");
console.log("|---|---|---|---|---|---|---|---|---|");
for (const c of streams) {
  const { b, l } = res.get(c);
  const bd = med(b, "decode"), ld = med(l, "decode"), bo = med(b, "output"), lo = med(l, "output");
  const lt = `${l.some((x) => x.bound) ? "≤ " : ""}${(med(l, "ttft") * 1e3).toFixed(0)}`;
  console.log(`| ${c} | ${bd.toFixed(1)} | ${ld.toFixed(1)} | ${(bd / ld).toFixed(2)} | ` +
    `${bo.toFixed(1)} | ${lo.toFixed(1)} | ${(bo / lo).toFixed(2)} | ` +
    `${(med(b, "ttft") * 1e3).toFixed(0)} | ${lt} |`);
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
  `${runs} interleaved runs. llama.cpp: ${peerNote(peer, version)}, ` +
  (peer.kind === "native"
    ? `llama-batched-bench -npl C -npp ${nPrompt} -ntg 1,${nGen - 1} (the tg 1 row an ` +
      `unmeasured warm-up), one process per run and stream count: decode = S_TG ` +
      `(C×(n−1) tokens over T_TG), output = C×n / (T_PP + T_TG), TTFT = T_PP, the one ` +
      `batched prefill of all C prompts` + (ttftBound ? ` (≤: C×p above -b 2048, ` +
      `prefilled in several llama_decode calls, so T_PP bounds the mean TTFT from above)` : ``) +
      `; it feeds token 0 without sampling and takes logits of the prompt batch's last row ` +
      `alone`
    : `one context with \`sequences: C\``) +
  `. Load average before ${loadBefore}, after ${loadAfter}.`);
