// baton against llama.cpp on the same GGUF files and thread count: `baton bench model`
// and the peer, interleaved run by run, medians of --runs each. The peer, chosen for each
// model, is the native llama.cpp build in the shared folder (its llama-bench) when it is
// there and runs that model on this CPU, else node-llama-cpp's prebuilt CPU build
// (bench/llama_cpp_bench.mjs); --peer forces one (see bench/llama_cpp_peer.mjs). Prints a markdown table for bench/RESULTS.md.
//   node bench/compare_llama_cpp.mjs [--runs 5] [-t 2] [-p 128] [-n 32] [--peer native|node] MODEL...
// Needs build/bin/baton, and for the node peer node-llama-cpp in ~/.cache/baton/peer
// (bench/setup_peer.sh).
import { execFileSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { choosePeer, nativeBench, peerNote, takePeerFlag } from "./llama_cpp_peer.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const baton = path.join(here, "..", "build", "bin", "baton");
const args = process.argv.slice(2);
const take = (flag, dflt) => {
  const i = args.indexOf(flag);
  if (i < 0) return dflt;
  const v = args[i + 1];
  args.splice(i, 2);
  return Number(v);
};
const runs = take("--runs", 5);
const threads = take("-t", 2);
const nPrompt = take("-p", 128);
const nGen = take("-n", 32);
const want = takePeerFlag(args);
const models = args;
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/// One run of the peer: { prompt_tokens_per_s, gen_tokens_per_s, llama_cpp (version) }.
function runPeer(peer, model) {
  const opts = { threads, nPrompt, nGen };
  if (peer.kind === "native") return nativeBench(peer, model, opts);
  return JSON.parse(execFileSync("node", [path.join(here, "llama_cpp_bench.mjs"), model,
    "-p", String(nPrompt), "-n", String(nGen), "-t", String(threads)]).toString().trim().split("\n").pop());
}

const rows = [];
for (const model of models) {
  const peer = choosePeer(want, "llama-bench", model, threads);
  const b = { pp: [], tg: [] };
  const l = { pp: [], tg: [] };
  let version = null;
  for (let r = 0; r < runs; ++r) {
    const out = JSON.parse(execFileSync(baton, ["bench", "model", "-m", model, "-t", String(threads),
      "-p", String(nPrompt), "-n", String(nGen), "-r", "1", "--json"]).toString());
    b.pp.push(out.prompt_tokens_per_s_median);
    b.tg.push(out.gen_tokens_per_s_median);
    const p = runPeer(peer, model);
    l.pp.push(p.prompt_tokens_per_s);
    l.tg.push(p.gen_tokens_per_s);
    version = p.llama_cpp;
    process.stderr.write(`${path.basename(model)} run ${r + 1}/${runs}: baton pp ${b.pp.at(-1).toFixed(1)} tg ${b.tg.at(-1).toFixed(1)} | llama.cpp pp ${l.pp.at(-1).toFixed(1)} tg ${l.tg.at(-1).toFixed(1)}\n`);
  }
  rows.push({ model: path.basename(model), b, l, version, peer });
}
console.log(`| model | baton pp${nPrompt} | llama.cpp pp${nPrompt} | ratio | baton tg${nGen} | llama.cpp tg${nGen} | ratio | peer |`);
console.log("|---|---|---|---|---|---|---|---|");
for (const r of rows) {
  const bp = median(r.b.pp), lp = median(r.l.pp), bt = median(r.b.tg), lt = median(r.l.tg);
  console.log(`| ${r.model} | ${bp.toFixed(1)} | ${lp.toFixed(1)} | ${(bp / lp).toFixed(2)} | ${bt.toFixed(2)} | ${lt.toFixed(2)} | ${(bt / lt).toFixed(2)} | ${r.peer.kind} |`);
}
// one footnote line per peer used
const notes = new Map();
for (const r of rows) {
  notes.set(r.peer.kind, `${r.peer.kind}: ${peerNote(r.peer, r.version)}` +
    (r.peer.kind === "native" ? " (llama-bench -r 1 per run, after its own warm-up; its generation starts from an empty context)" : ""));
}
console.log(`\nllama.cpp ${[...notes.values()].join("; ")}; ${threads} threads; medians of ${runs} interleaved runs.`);
